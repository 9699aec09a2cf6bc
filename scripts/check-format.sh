#!/usr/bin/env bash
# Fail if any tracked C file is not clang-format clean. A missing clang-format is a failure,
# not a skip: a check that silently passes would let unformatted code land.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
	echo "format check FAILED: clang-format is not installed (Debian package clang-format;" >&2
	echo "  scripts/deps.sh test installs it)" >&2
	exit 1
fi
bad=$(git ls-files '*.c' '*.h' | while read -r f; do
	[ -f "$f" ] && ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1 && echo "$f"
done || true)
if [ -n "$bad" ]; then
	echo "not clang-format clean (run: make format): $bad"
	exit 1
fi
echo "format: clean"

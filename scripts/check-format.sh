#!/usr/bin/env bash
# Fail if any tracked C file is not clang-format clean (skipped if clang-format is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
	echo "clang-format not installed: format check skipped"
	exit 0
fi
bad=$(git ls-files '*.c' '*.h' | while read -r f; do
	[ -f "$f" ] && ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1 && echo "$f"
done || true)
if [ -n "$bad" ]; then
	echo "not clang-format clean (run: make format): $bad"
	exit 1
fi
echo "format: clean"

#!/usr/bin/env bash
# make deb: build the Debian package from a clean copy of the tree (so that build
# directories and the developer's files never reach it), then run lintian on it. The .deb
# and the lintian report land in dist/deb/. Fails on a lintian error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lb-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lb" "$root/dist/deb"
# The tracked files as they are now (a checkout need not be committed to be packaged).
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work/lb")
cd "$work/lb"
dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || {
	tail -40 "$work/build.log" >&2
	echo "make deb: dpkg-buildpackage failed (log above)" >&2
	exit 1
}
deb=$(ls "$work"/lb_*.deb)
cp "$deb" "$root/dist/deb/"
lintian --fail-on error "$deb" | tee "$root/dist/deb/lintian.txt"
echo "make deb: $root/dist/deb/$(basename "$deb") (lintian: no errors)"

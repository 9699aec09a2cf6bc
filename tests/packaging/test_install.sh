#!/usr/bin/env bash
# make install's result, checked in a scratch DESTDIR: the binaries, the systemd unit (paths
# that follow the prefix, Type=notify, SIGHUP reload, and a systemd-analyze security
# exposure of at most 2.0), sysusers, the example config (which `lb --check` accepts), bash
# completion and the docs. Usage: test_install.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: test_install.sh BUILD_DIR}" && pwd)
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
dest=$(mktemp -d /tmp/lb-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "test_install: $*" >&2; exit 1; }

DESTDIR=$dest cmake --install "$build" >/dev/null
case "$prefix" in /usr) etc=/etc ;; *) etc=$prefix/etc ;; esac
for f in "$prefix/sbin/lb" "$prefix/bin/lbctl" "$prefix/lib/systemd/system/lb.service" \
	"$prefix/lib/sysusers.d/lb.conf" "$etc/lb/lb.json" \
	"$prefix/share/bash-completion/completions/lbctl" "$prefix/share/doc/lb/README.md" \
	"$prefix/share/man/man8/lb.8" "$prefix/share/man/man8/lbctl.8" \
	"$prefix/share/man/man5/lb.json.5"; do
	[ -e "$dest$f" ] || fail "missing after make install: $f"
done
[ -x "$dest$prefix/sbin/lb" ] && [ -x "$dest$prefix/bin/lbctl" ] || fail "binaries not executable"

unit=$dest$prefix/lib/systemd/system/lb.service
grep -qx "ExecStart=$prefix/sbin/lb -c $etc/lb/lb.json" "$unit" || fail "ExecStart does not follow the prefix: $(grep ExecStart= "$unit")"
grep -qx 'Type=notify' "$unit" || fail "not Type=notify"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "no SIGHUP reload"
grep -qx 'User=lb' "$unit" || fail "no dedicated user"
grep -q '^u lb ' "$dest$prefix/lib/sysusers.d/lb.conf" || fail "sysusers does not create lb"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (make test installs the systemd package)"
# --threshold is in tenths: fail above an exposure of 2.0 ("OK" is below 4.9).
if ! systemd-analyze security --offline=true --threshold=20 "$unit" >"$dest/security.txt" 2>&1; then
	tail -3 "$dest/security.txt" >&2
	fail "systemd-analyze security rates the unit above 2.0"
fi
tail -1 "$dest/security.txt"

"$dest$prefix/sbin/lb" -c "$dest$etc/lb/lb.json" --check >/dev/null || fail "the example config does not pass lb --check"
"$dest$prefix/bin/lbctl" --help >/dev/null || fail "the installed lbctl does not run"
bash -n "$dest$prefix/share/bash-completion/completions/lbctl" || fail "the completion script is not valid bash"
MANWIDTH=80 man -l "$dest$prefix/share/man/man5/lb.json.5" 2>/dev/null | grep -q 'configuration file of lb' ||
	fail "man does not render the installed lb.json(5)"
echo "test_install: make install into $prefix: all files in place"

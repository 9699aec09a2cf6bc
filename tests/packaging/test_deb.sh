#!/usr/bin/env bash
# make deb's package: built with dpkg-buildpackage, no lintian error (scripts/build-deb.sh),
# every file where it belongs, and the service as systemd would run it: the unit's
# ExecStartPre check, then lb with a copy of the packaged config (moved to 127.0.0.1 and a
# scratch control socket), answering lbctl and the status page, reloading on SIGHUP and
# stopping cleanly on SIGTERM. Run from the packaged files in a scratch root; as root in CI
# (CI set) also installed for real with apt-get (postinst creates the lb user), run as lb,
# and purged. Usage: test_deb.sh SOURCE_DIR
set -euo pipefail
src=$(cd "${1:?usage: test_deb.sh SOURCE_DIR}" && pwd)
tmp=$(mktemp -d /tmp/lb-debtest.XXXXXX)
lb_pid=
cleanup() {
	[ -n "$lb_pid" ] && kill -9 "$lb_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test_deb: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$src/scripts/build-deb.sh" >"$tmp/build.txt" 2>&1 || { tail -20 "$tmp/build.txt" >&2; fail "make deb failed"; }
deb=$(ls -t "$src"/dist/deb/lb_*.deb | head -1)
root=$tmp/root
dpkg-deb -x "$deb" "$root"
for f in /usr/sbin/lb /usr/bin/lbctl /lib/systemd/system/lb.service /etc/lb/lb.json \
	/usr/share/man/man8/lb.8.gz /usr/share/man/man8/lbctl.8.gz /usr/share/man/man5/lb.json.5.gz \
	/usr/share/bash-completion/completions/lbctl /usr/share/doc/lb/README.md; do
	[ -e "$root$f" ] || fail "the package lacks $f"
done
dpkg-deb -f "$deb" Depends | grep -q liburing || fail "no dependency on liburing"
grep -qx 'ExecStart=/usr/sbin/lb -c /etc/lb/lb.json' "$root/lib/systemd/system/lb.service" ||
	fail "the packaged unit does not run /usr/sbin/lb -c /etc/lb/lb.json"

# run BINDIR_ROOT USER: the service's start, reload and stop with the package's binaries
# under BINDIR_ROOT ("" = installed), as USER (empty = this user).
run_service() {
	local r=$1 user=$2 mport lport cfg=$tmp/lb.json sock=$tmp/run/lb.sock
	mport=$(free_port)
	lport=$(free_port)
	mkdir -p "$tmp/run"
	sed -e "s#/run/lb/lb.sock#$sock#" -e "s#127.0.0.1:9100#127.0.0.1:$mport#" \
		-e "s#0.0.0.0:8080#127.0.0.1:$lport#" "$r/etc/lb/lb.json" >"$cfg"
	local as=()
	if [ -n "$user" ]; then
		chown -R "$user" "$tmp/run"
		chmod 755 "$tmp"
		chmod 644 "$cfg"
		as=(setpriv --reuid="$user" --regid="$user" --init-groups --)
	fi
	"${as[@]}" "$r/usr/sbin/lb" -c "$cfg" --check >/dev/null || fail "ExecStartPre (lb --check) failed"
	"${as[@]}" "$r/usr/sbin/lb" -c "$cfg" 2>"$tmp/lb.log" &
	lb_pid=$!
	for _ in $(seq 100); do
		[ -S "$sock" ] && "$r/usr/bin/lbctl" -s "$sock" status >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$r/usr/bin/lbctl" -s "$sock" status >"$tmp/status.txt" || { cat "$tmp/lb.log" >&2; fail "lbctl status failed"; }
	"$r/usr/bin/lbctl" -s "$sock" backends | grep -q web1 || fail "lbctl backends lacks web1"
	curl -fs "http://127.0.0.1:$mport/" | grep -q '<title>lb status' || fail "no status page"
	kill -HUP "$lb_pid"
	sleep 0.5
	"$r/usr/bin/lbctl" -s "$sock" status >/dev/null || fail "lbctl failed after SIGHUP"
	grep -q "reload: .* applied" "$tmp/lb.log" || fail "SIGHUP did not reload"
	kill -TERM "$lb_pid"
	wait "$lb_pid" || fail "lb did not exit 0 on SIGTERM"
	lb_pid=
}

run_service "$root" ""
echo "test_deb: $(basename "$deb"): files in place; the service starts, answers lbctl, reloads, stops"

if [ -n "${CI:-}" ] && [ "$(id -u)" -eq 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$tmp/apt.txt" 2>&1 ||
		{ tail -20 "$tmp/apt.txt" >&2; fail "apt-get install of the package failed"; }
	getent passwd lb >/dev/null || fail "postinst did not create the lb user"
	run_service "" lb
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq lb >/dev/null 2>&1 || fail "purge failed"
	[ ! -e /usr/sbin/lb ] || fail "/usr/sbin/lb left after purge"
	echo "test_deb: installed with apt-get, ran as user lb, purged"
fi

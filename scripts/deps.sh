#!/usr/bin/env bash
# Install the Debian packages a make target needs, only those missing.
# usage: scripts/deps.sh build|test|fuzz|bench|demo|deb
# As root it runs apt-get itself (apt-get update once, only if a package is not found);
# otherwise it prints the exact command and exits 2.
set -euo pipefail

build=(build-essential cmake pkg-config liburing-dev libjansson-dev check)
# libFuzzer and the sanitizer runtimes come with clang's compiler-rt (Debian bookworm: 14).
fuzz=(clang libclang-rt-14-dev)
case "${1:-build}" in
build) want=("${build[@]}") ;;
demo) want=("${build[@]}" curl) ;;
deb) want=("${build[@]}" debhelper dpkg-dev fakeroot lintian) ;;
fuzz) want=("${build[@]}" "${fuzz[@]}") ;;
test) want=("${build[@]}" "${fuzz[@]}" clang-format curl redis-server postgresql mariadb-server mariadb-client dnsmasq-base bind9-dnsutils iproute2 bird2 keepalived systemd groff-base man-db python3 chromium) ;;
bench) want=("${build[@]}" iperf3 wrk haproxy nginx libnginx-mod-stream gnuplot-nox python3 dnsmasq-base dnsperf redis-server redis-tools postgresql postgresql-client) ;;
*)
	echo "usage: $0 build|test|fuzz|bench|demo|deb" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "lb needs these Debian packages: ${missing[*]}" >&2
	echo "run as root:  apt-get update && $cmd" >&2
	exit 2
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have empty package lists: update once when a package is unknown.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
	apt-get update -qq
fi
# Debian's daemons (haproxy, nginx, bird2, keepalived, mariadb) must not start system-wide instances on install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
trap '[ $made_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# test_fleet: three lb instances behind a bird2 router, in network namespaces.
#
# Each instance runs lb (ip_hash over five tagged backends; the instances' configs list them
# in different orders and under different names), bird2 announcing the VIP over BGP with BFD
# (examples/fleet/bird-instance.conf) and lb-bgp-watchdog gating the announcement on lb's
# /ready. The router (examples/fleet/bird-router.conf) installs one ECMP route with a next
# hop per instance and hashes flows on L4. 200 client addresses then show: the announcement
# follows /ready; every client reaches the same backend through every instance; a hung
# instance leaves the route within 2 s (BFD) and moves no client; a drained instance refuses
# nothing; a dead backend moves only its own clients, alike on every instance.
#
# Needs root, `ip netns`, bird2 and curl; exits 77 (ctest: skipped) without them.
# Every address is in 198.18.0.0/15 inside namespaces this script creates and deletes.
# KEEP_TMP=1 keeps the logs and configs; they are printed on failure anyway.
set -Eeuo pipefail

SRC_DIR=${LB_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build}
LB_BIN=${LB_BIN:-$BUILD_DIR/lb}
LBCTL_BIN=${LBCTL_BIN:-$BUILD_DIR/lbctl}
LB_TESTSRV_BIN=${LB_TESTSRV_BIN:-$BUILD_DIR/lb-testsrv}
FLEET_CLIENT_BIN=${FLEET_CLIENT_BIN:-$BUILD_DIR/fleet-client}
KIT=$SRC_DIR/examples/fleet
# shellcheck source=tests/fleet/lib.sh
. "$SRC_DIR/tests/fleet/lib.sh"

VIP=198.18.0.100
PORT=7000
BACKEND_PORT=8000
CLIENT_BASE=198.19.1.1
CLIENTS=200
NBACKENDS=5
INSTANCES=(1 2 3)
# withdraw_delay of every instance: the watchdog polls every 200 ms and BGP/BFD move the
# route within a few ms, so 2 s leaves a wide margin on a loaded machine
WITHDRAW_DELAY_MS=2000
# a moved in-flight connection is reset (lb is a full proxy); at most this many per drain
MAX_RESETS=2

# ---------------------------------------------------------------------------- helpers

# Prints the logs that explain a failure, then exits 1 (the EXIT trap cleans up).
fail() {
	echo "FAIL [$1] ${*:2}"
	FAILED=1
	dump_logs
	exit 1
}
FAILED=0
LAST_ERR=
trap 'LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR

dump_logs() {
	[ -n "${TMP:-}" ] && [ -d "$TMP" ] || return 0
	local f
	for f in "$TMP"/*.log; do
		[ -s "$f" ] || continue
		echo "---- ${f##*/} (last 25 lines)"
		tail -n 25 "$f"
	done
	echo "---- router: ip route"
	ip -n "$NS_ROUTER" route 2>&1 || true
	echo "---- router: bird protocols"
	timeout 5 birdc -s "$TMP/bird-router.ctl" show protocols 2>&1 || true
	KEEP_TMP=1
	echo "(logs and configs kept in $TMP)"
}

in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------------------- preconditions

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
if ! command -v bird >/dev/null || ! command -v birdc >/dev/null; then
	skip "bird2 is not installed (apt-get install bird2)"
fi
command -v curl >/dev/null || skip "curl is not installed (the watchdog needs it)"
for bin in "$LB_BIN" "$LBCTL_BIN" "$LB_TESTSRV_BIN" "$FLEET_CLIENT_BIN"; do
	[ -x "$bin" ] || {
		echo "FAIL: $bin is not built (make build)"
		exit 1
	}
done

ID=lbf$$
NS_CLIENT=$ID-client
NS_ROUTER=$ID-router
NS_BACKENDS=$ID-backends
CREATED_NS=()
PIDS=()
TMP=$(mktemp -d /tmp/lb-fleet.XXXXXX)
KEEP_TMP=${KEEP_TMP:-0}

cleanup() {
	local rc=$? pid ns
	if [ "$rc" -ne 0 ] && [ "$rc" -ne "$SKIP" ] && [ "$FAILED" -eq 0 ]; then
		echo "FAIL [setup] exit status $rc after a failed command (${LAST_ERR:-unknown})"
		dump_logs
	fi
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	for ns in "${CREATED_NS[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	if [ "$KEEP_TMP" = 1 ]; then
		echo "kept: $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns_lb() {
	echo "$ID-lb$1"
}

add_ns() {
	ip netns add "$1" 2>/dev/null || return 1
	CREATED_NS+=("$1")
	ip -n "$1" link set lo up
}

# link NS NS_ADDR ROUTER_IF ROUTER_ADDR (both /24): a veth between NS (eth0) and the router
link() {
	ip link add eth0 netns "$1" type veth peer name "$3" netns "$NS_ROUTER"
	ip -n "$1" addr add "$2/24" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$NS_ROUTER" addr add "$4/24" dev "$3"
	ip -n "$NS_ROUTER" link set "$3" up
	ip -n "$1" route add default via "$4"
}

# ---------------------------------------------------------------------------- topology

setup_network() {
	add_ns "$NS_ROUTER" || skip "cannot create network namespaces (ip netns add failed)"
	add_ns "$NS_CLIENT"
	add_ns "$NS_BACKENDS"
	local i k
	for i in "${INSTANCES[@]}"; do
		add_ns "$(ns_lb "$i")"
	done
	# forward, hash flows on L4 (else one client IP's connections all take one path), and
	# no reverse-path filter: a drained instance's replies still come from the VIP
	in_ns "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
		net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

	link "$NS_CLIENT" 198.18.1.2 to-client 198.18.1.1
	link "$NS_BACKENDS" 198.18.2.2 to-backends 198.18.2.1
	for i in "${INSTANCES[@]}"; do
		link "$(ns_lb "$i")" "198.18.1$i.2" "to-lb$i" "198.18.1$i.1"
	done
	# 200 client addresses and 5 backend addresses, each a /32 on lo behind its veth
	for ((k = 1; k <= CLIENTS; k++)); do
		echo "addr add 198.19.1.$k/32 dev lo"
	done | ip -n "$NS_CLIENT" -batch -
	for ((k = 1; k <= NBACKENDS; k++)); do
		ip -n "$NS_BACKENDS" addr add "198.18.3.$k/32" dev lo
	done
	ip -n "$NS_ROUTER" route add 198.19.1.0/24 via 198.18.1.2
	ip -n "$NS_ROUTER" route add 198.18.3.0/24 via 198.18.2.2
}

BACKEND_PIDS=()

start_backend() {
	ip netns exec "$NS_BACKENDS" "$LB_TESTSRV_BIN" --mode tagged --listen "198.18.3.$1:$BACKEND_PORT" \
		--name "b$1" >>"$TMP/backends.log" 2>&1 &
	BACKEND_PIDS[$1]=$!
	PIDS+=($!)
}

backend_listening() {
	[ -n "$(in_ns "$NS_BACKENDS" ss -Hltn "src 198.18.3.$1:$BACKEND_PORT")" ]
}

# ---------------------------------------------------------------------------- lb instances

# The same five backends in every config: lb1 in order as b1..b5, lb2 reversed, lb3
# shuffled under other names. ip_hash must not care.
backend_list() {
	local order names k n=0 sep=
	case $1 in
	1) order=(1 2 3 4 5) names=(b1 b2 b3 b4 b5) ;;
	2) order=(5 4 3 2 1) names=(b5 b4 b3 b2 b1) ;;
	3) order=(3 1 5 2 4) names=(x y z v w) ;;
	esac
	for k in "${order[@]}"; do
		printf '%s\n        { "name": "%s", "address": "198.18.3.%s:%s" }' \
			"$sep" "${names[$n]}" "$k" "$BACKEND_PORT"
		sep=,
		n=$((n + 1))
	done
}

write_lb_config() {
	local i=$1
	cat >"$TMP/lb$i.json" <<-EOF
		{
		  "engine": "${LB_ENGINE:-auto}",
		  "withdraw_delay": "${WITHDRAW_DELAY_MS}ms",
		  "shutdown_grace": "2s",
		  "metrics": { "listen": "127.0.0.1:9100" },
		  "control": { "socket": "$TMP/lb$i.sock" },
		  "listeners": [
		    { "name": "vip", "listen": "$VIP:$PORT", "freebind": true, "pool": "app" },
		    { "name": "direct", "listen": "198.18.1$i.2:$PORT", "pool": "app" }
		  ],
		  "pools": [
		    {
		      "name": "app",
		      "algorithm": "ip_hash",
		      "health": { "type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2 },
		      "backends": [$(backend_list "$i")
		      ]
		    }
		  ]
		}
	EOF
}

# set_define FILE NAME VALUE: rewrite `define NAME = ...;` of a kit config, and prove it took.
set_define() {
	sed -i -E "s|^(define $2 *= *)[^;]*;|\1$3;|" "$1"
	grep -Eq "^define $2 *= *$(printf '%s' "$3" | sed 's/[].[]/\\&/g');" "$1" || {
		echo "FAIL: $1: no 'define $2' to set"
		exit 1
	}
}

# bird_log FILE NAME: log to $TMP/bird-NAME.log, with session state changes (placed first:
# `debug protocols` applies to the protocols defined after it)
bird_log() {
	sed -i "1i log \"$TMP/bird-$2.log\" all;\ndebug protocols { states, events };" "$1"
}

write_bird_configs() {
	local i f
	f=$TMP/bird-router.conf
	cp "$KIT/bird-router.conf" "$f"
	set_define "$f" ROUTER_ID 198.18.1.1
	for i in "${INSTANCES[@]}"; do
		set_define "$f" "LB$i" "198.18.1$i.2"
	done
	set_define "$f" VIPS "[ $VIP/32 ]"
	bird_log "$f" router
	for i in "${INSTANCES[@]}"; do
		f=$TMP/bird-lb$i.conf
		cp "$KIT/bird-instance.conf" "$f"
		set_define "$f" INSTANCE_ID "198.18.1$i.2"
		set_define "$f" ROUTER_IP "198.18.1$i.1"
		set_define "$f" VIP4 "$VIP/32"
		bird_log "$f" "lb$i"
	done
	for f in "$TMP"/bird-*.conf; do
		bird -p -c "$f" || {
			echo "FAIL: bird rejects $f"
			exit 1
		}
	done
}

declare -A LB_PID BIRD_PID WATCHDOG_PID

birds_listen() {
	local name
	for name in router "${INSTANCES[@]/#/lb}"; do
		[ -S "$TMP/bird-$name.ctl" ] || return 1
	done
}

start_bird() { # NAME NS
	ip netns exec "$2" bird -f -c "$TMP/bird-$1.conf" -s "$TMP/bird-$1.ctl" -P "$TMP/bird-$1.pid" \
		>>"$TMP/bird-$1.stderr.log" 2>&1 &
	BIRD_PID[$1]=$!
	PIDS+=($!)
}

start_watchdog() {
	ip netns exec "$(ns_lb "$1")" sh "$KIT/lb-bgp-watchdog" --socket "$TMP/bird-lb$1.ctl" \
		--protocols vip4 --url http://127.0.0.1:9100/ready >>"$TMP/watchdog-lb$1.log" 2>&1 &
	WATCHDOG_PID[$1]=$!
	PIDS+=($!)
}

start_lb() {
	ip netns exec "$(ns_lb "$1")" "$LB_BIN" -c "$TMP/lb$1.json" >>"$TMP/lb$1.log" 2>&1 &
	LB_PID[$1]=$!
	PIDS+=($!)
}

lbctl() { # INSTANCE ARGS...
	local i=$1
	shift
	"$LBCTL_BIN" -s "$TMP/lb$i.sock" "$@"
}

lb_answers() {
	lbctl "$1" status >/dev/null 2>&1
}

ready_code() {
	in_ns "$(ns_lb "$1")" curl -s -o /dev/null -m 1 -w '%{http_code}' \
		http://127.0.0.1:9100/ready || true
}

is_ready() {
	[ "$(ready_code "$1")" = 200 ]
}

# ---------------------------------------------------------------------------- router views

# The gateways of the router's route to the VIP, sorted, one line ("" = no route).
vip_paths() {
	ip -n "$NS_ROUTER" -4 route show "$VIP/32" | grep -o 'via [0-9.]*' | awk '{print $2}' |
		sort | paste -sd' ' || true
}

path_count() {
	local p
	p=$(vip_paths)
	[ -n "$p" ] && wc -w <<<"$p" || echo 0
}

has_paths() {
	[ "$(path_count)" -eq "$1" ]
}

lacks_path() {
	[[ " $(vip_paths) " != *" $1 "* ]]
}

bgp_established() {
	timeout 5 birdc -s "$TMP/bird-router.ctl" show protocols 2>/dev/null | grep -c Established ||
		true
}

all_bgp_up() {
	[ "$(bgp_established)" -eq "${#INSTANCES[@]}" ]
}

# ---------------------------------------------------------------------------- clients

# tags DEST OUTFILE: "SRC TAG" for each of the 200 clients
tags() {
	in_ns "$NS_CLIENT" "$FLEET_CLIENT_BIN" tags --dst "$1" --src "$CLIENT_BASE" \
		--count "$CLIENTS" --timeout 2000 >"$2" || true
}

# tags_everywhere PREFIX: PREFIX.lbN (each instance directly) and PREFIX.vip (ECMP)
tags_everywhere() {
	local i pids=()
	for i in "${INSTANCES[@]}"; do
		tags "198.18.1$i.2:$PORT" "$1.lb$i" &
		pids+=($!)
	done
	tags "$VIP:$PORT" "$1.vip" &
	pids+=($!)
	wait "${pids[@]}"
}

# agreeing FILE...: how many clients got the same tag (and a tag) in every file
agreeing() {
	paste "$@" | awk '{
		ok = ($2 !~ /^!/)
		for (c = 4; c <= NF; c += 2) if ($c != $2 || $(c - 1) != $1) ok = 0
		n += ok
	} END { print n + 0 }'
}

failures() {
	grep -h ' !' "$@" | head -n 5 || true
}

spread() {
	awk '{n[$2]++} END {for (t in n) printf "%s:%d ", t, n[t]}' "$1" | tr ' ' '\n' | sort |
		paste -sd' '
}

# accepted connections on the vip listener of instance $1
vip_accepted() {
	lbctl "$1" status 2>/dev/null | awk '$1 == "vip" && $2 == "tcp" {print $6}'
}

fingerprint() {
	lbctl "$1" --json status 2>/dev/null | grep -o '"fingerprint": *"[0-9a-f]*"' |
		grep -o '[0-9a-f]\{8\}' | head -n 1 || true
}

backend_state() { # INSTANCE BACKEND_NUMBER
	lbctl "$1" backends 2>/dev/null |
		awk -v a="198.18.3.$2:$BACKEND_PORT" '$3 == a {print $4; exit}'
}

all_instances_say() { # BACKEND_NUMBER STATE INSTANCE...
	local k=$1 want=$2 i
	shift 2
	for i in "$@"; do
		[ "$(backend_state "$i" "$k")" = "$want" ] || return 1
	done
}

# stream_start NAME: new connections through the VIP every 10 ms until stream_stop
stream_start() {
	ip netns exec "$NS_CLIENT" "$FLEET_CLIENT_BIN" stream --dst "$VIP:$PORT" --src "$CLIENT_BASE" \
		--count "$CLIENTS" --duration 60000 --every 10 --timeout 2000 \
		>"$TMP/$1.out" 2>"$TMP/$1.log" &
	STREAM_PID=$!
	PIDS+=($!)
}

stream_stop() {
	kill -TERM "$STREAM_PID" 2>/dev/null || true
	wait "$STREAM_PID" || true
}


check_stream() { # STEP NAME
	local ok refused reset rbt timeout unreach
	[ -s "$TMP/$2.out" ] || fail "$1" "the client stream printed no totals"
	ok=$(stream_figure "$TMP/$2.out" ok)
	refused=$(stream_figure "$TMP/$2.out" refused)
	reset=$(stream_figure "$TMP/$2.out" reset)
	rbt=$(stream_figure "$TMP/$2.out" reset_before_tag)
	timeout=$(stream_figure "$TMP/$2.out" timeout)
	unreach=$(stream_figure "$TMP/$2.out" unreachable)
	log "stream: ok=$ok refused=$refused reset=$reset (before the tag: $rbt)" \
		"timeout=$timeout unreachable=$unreach"
	sed 's/^/    /' "$TMP/$2.log"
	[ "$ok" -gt 100 ] || fail "$1" "only $ok connections succeeded"
	[ "$refused" -eq 0 ] || fail "$1" "$refused connections refused"
	if [ "$timeout" -ne 0 ] || [ "$unreach" -ne 0 ]; then
		fail "$1" "$timeout timed out, $unreach unreachable"
	fi
	[ "$reset" -le "$MAX_RESETS" ] || fail "$1" "$reset connections reset (at most" \
		"$MAX_RESETS expected: only one in flight while the route changes can move)"
	if [ "$reset" -gt 0 ]; then
		log "the $reset reset(s): connection(s) in flight when the route changed; ECMP" \
			"moved their packets to another instance, which has no such connection" \
			"(lb terminates TCP). Not a refusal."
	fi
	STREAM_SUMMARY="ok=$ok refused=$refused reset=$reset"
}

# ---------------------------------------------------------------------------- steps

# The kit's files as shipped: lb accepts lb.json, bird both configs, keepalived its config.
step_kit() {
	local s=kit checked="bird-instance.conf bird-router.conf lb.json lb-bgp-watchdog"
	bird -p -c "$KIT/bird-instance.conf" || fail $s "bird rejects bird-instance.conf"
	bird -p -c "$KIT/bird-router.conf" || fail $s "bird rejects bird-router.conf"
	"$LB_BIN" -c "$KIT/lb.json" --check >/dev/null || fail $s "lb rejects lb.json"
	sh -n "$KIT/lb-bgp-watchdog" || fail $s "lb-bgp-watchdog is not valid sh"
	if command -v keepalived >/dev/null; then
		# keepalived 2.2.7's -t kills itself (status 143) after checking a script that runs
		# as another user than its own; check the same file with script_user root
		sed 's/^\([[:space:]]*script_user\) .*/\1 root/' "$KIT/keepalived.conf" \
			>"$TMP/keepalived-check.conf"
		keepalived -t -f "$TMP/keepalived-check.conf" -l ||
			fail $s "keepalived rejects keepalived.conf"
		checked="$checked keepalived.conf"
	fi
	pass $s "syntax checked with the real programs: $checked"
}

step_announce() {
	local s=announce i k
	setup_network
	write_bird_configs
	for ((k = 1; k <= NBACKENDS; k++)); do
		start_backend "$k"
	done
	start_bird router "$NS_ROUTER"
	for i in "${INSTANCES[@]}"; do
		write_lb_config "$i"
		start_bird "lb$i" "$(ns_lb "$i")"
	done
	for ((k = 1; k <= NBACKENDS; k++)); do
		wait_until 5000 backend_listening "$k" || fail $s "backend b$k did not start"
	done
	wait_until 5000 birds_listen || fail $s "bird did not start"
	for i in "${INSTANCES[@]}"; do
		start_watchdog "$i"
	done
	wait_until 20000 all_bgp_up || fail $s "BGP sessions: $(bgp_established)/3 established"
	sleep 0.5 # a few watchdog polls: lb is not running, so nothing may be announced
	[ "$(path_count)" -eq 0 ] || fail $s "VIP announced before lb runs: $(vip_paths)"
	log "before lb starts: BGP 3/3 established, watchdogs see no /ready, VIP paths: 0"

	for i in "${INSTANCES[@]}"; do
		start_lb "$i"
	done
	for i in "${INSTANCES[@]}"; do
		wait_until 10000 lb_answers "$i" || fail $s "lb$i did not start"
		[ -z "$(ip -n "$(ns_lb "$i")" -o addr show dev lo to "$VIP/32")" ] ||
			fail $s "the VIP is on lb$i already"
		[ -n "$(in_ns "$(ns_lb "$i")" ss -Hltn "src $VIP:$PORT")" ] ||
			fail $s "lb$i does not listen on $VIP:$PORT"
	done
	log "lb1-3 listen on $VIP:$PORT before the address exists on their hosts (freebind)"
	for i in "${INSTANCES[@]}"; do
		ip -n "$(ns_lb "$i")" addr add "$VIP/32" dev lo
	done
	for i in "${INSTANCES[@]}"; do
		wait_until 5000 is_ready "$i" || fail $s "lb$i /ready: $(ready_code "$i")"
	done
	wait_until 10000 has_paths 3 || fail $s "VIP paths after /ready = 200: $(vip_paths)"
	ip -n "$NS_ROUTER" route show "$VIP/32" | sed 's/^/    router: /'
	[[ "$(ip -n "$NS_ROUTER" route show "$VIP/32")" == *"proto bird"* ]] ||
		fail $s "the VIP route is not from bird"
	pass $s "3-path ECMP route to $VIP via BGP ($(vip_paths)), only once /ready = 200" \
		"(before lb ran: 3/3 sessions, 0 paths)"
}

# flow_paths PREFIX: the next hop the router picks for 2000 TCP flows (200 clients x 10
# source ports) towards PREFIX, one per line; `ip route get` hashes them like real packets
flow_paths() {
	local k p
	for ((k = 1; k <= CLIENTS; k++)); do
		for ((p = 40000; p < 40010; p++)); do
			echo "route get $1 from 198.19.1.$k iif to-client ipproto tcp sport $p dport $PORT"
		done
	done | ip -n "$NS_ROUTER" -batch - | grep -o 'via [0-9.]*' | awk '{print $2}'
}

# moved_share BEFORE AFTER GONE: "N of M" flows that were not on GONE and changed path
moved_share() {
	paste "$1" "$2" | awk -v gone="$3" '$1 == gone {next} {n++; if ($1 != $2) m++}
		END {printf "%d of %d (%.1f%%)", m, n, n ? 100 * m / n : 0}'
}

# What a withdrawal does to the other instances' flows, on the router alone: the VIP's three
# next hops as a plain multipath route (what bird installs) and as a resilient nexthop group.
step_ecmp_moves() {
	local s=ecmp-moves plain=198.18.0.201 res=198.18.0.202 gone=198.18.11.2 i hops=() m_plain m_res
	for i in "${INSTANCES[@]}"; do
		ip -n "$NS_ROUTER" nexthop add id "10$i" via "198.18.1$i.2" dev "to-lb$i"
		hops+=(nexthop via "198.18.1$i.2" dev "to-lb$i")
	done
	ip -n "$NS_ROUTER" nexthop add id 100 group 101/102/103 type resilient buckets 64 \
		idle_timer 120
	ip -n "$NS_ROUTER" route add "$res/32" nhid 100
	ip -n "$NS_ROUTER" route add "$plain/32" "${hops[@]}"
	flow_paths "$plain" >"$TMP/ecmp-plain.before"
	flow_paths "$res" >"$TMP/ecmp-res.before"
	# lb1 leaves: what bird does to a multipath route, and the same for the group
	ip -n "$NS_ROUTER" route replace "$plain/32" "${hops[@]:5}"
	ip -n "$NS_ROUTER" nexthop del id 101
	flow_paths "$plain" >"$TMP/ecmp-plain.after"
	flow_paths "$res" >"$TMP/ecmp-res.after"
	ip -n "$NS_ROUTER" route del "$plain/32"
	ip -n "$NS_ROUTER" route del "$res/32"
	ip -n "$NS_ROUTER" nexthop del id 100
	ip -n "$NS_ROUTER" nexthop del id 102
	ip -n "$NS_ROUTER" nexthop del id 103
	[ "$(wc -l <"$TMP/ecmp-plain.after")" -eq 2000 ] || fail $s "ip route get failed"
	m_plain=$(moved_share "$TMP/ecmp-plain.before" "$TMP/ecmp-plain.after" "$gone")
	m_res=$(moved_share "$TMP/ecmp-res.before" "$TMP/ecmp-res.after" "$gone")
	log "lb1 (first of 3 next hops) leaves: flows of lb2/lb3 that move to another instance:"
	log "  plain multipath route (bird): $m_plain"
	log "  resilient group, 64 buckets:  $m_res"
	case $m_res in 0\ *) ;; *) fail $s "the resilient group moved $m_res" ;; esac
	pass $s "a withdrawal moves $m_plain of the other instances' flows with a plain" \
		"multipath route, $m_res with a resilient nexthop group"
}

step_agree() {
	local s=agree i k n fp fps=() want
	for i in "${INSTANCES[@]}"; do
		for ((k = 1; k <= NBACKENDS; k++)); do
			wait_until 5000 all_instances_say "$k" up "$i" ||
				fail $s "lb$i: backend b$k is $(backend_state "$i" "$k")"
		done
	done
	tags_everywhere "$TMP/agree"
	n=$(agreeing "$TMP"/agree.lb1 "$TMP"/agree.lb2 "$TMP"/agree.lb3 "$TMP"/agree.vip)
	log "agree: $n/$CLIENTS (lb1-direct = lb2-direct = lb3-direct = VIP)"
	log "clients per backend: $(spread "$TMP/agree.vip")"
	log "VIP connections per instance: lb1 $(vip_accepted 1), lb2 $(vip_accepted 2)," \
		"lb3 $(vip_accepted 3)"
	[ "$n" -eq "$CLIENTS" ] || fail $s "agree: $n/$CLIENTS $(failures "$TMP"/agree.*)"
	for i in "${INSTANCES[@]}"; do
		[ "$(vip_accepted "$i")" -gt 0 ] || fail $s "ECMP sent nothing to lb$i"
		fp=$(fingerprint "$i")
		fps+=("${fp:-none}")
	done
	want="${fps[0]} ${fps[0]} ${fps[0]}"
	if [ "${fps[*]}" = "none none none" ]; then
		log "fingerprints: not reported by this lb (check skipped)"
		fp="not reported"
	elif [ "${fps[*]}" = "$want" ]; then
		log "fingerprints: lb1 ${fps[0]}, lb2 ${fps[1]}, lb3 ${fps[2]}"
		fp="equal ${fps[0]}"
	else
		fail $s "fingerprints differ: lb1 ${fps[0]}, lb2 ${fps[1]}, lb3 ${fps[2]}"
	fi
	pass $s "agree: $n/$CLIENTS with reordered and renamed configs; fingerprints $fp"
}

step_backend_down() {
	local s=backend-down victim=3 t0 t_down n moved=0 should kept total_kept
	t0=$(now_ms)
	kill -KILL "${BACKEND_PIDS[$victim]}"
	wait "${BACKEND_PIDS[$victim]}" 2>/dev/null || true
	wait_until 5000 all_instances_say "$victim" down "${INSTANCES[@]}" ||
		fail $s "not every instance marked b$victim down"
	t_down=$(($(now_ms) - t0))
	tags_everywhere "$TMP/down"
	n=$(agreeing "$TMP"/down.lb1 "$TMP"/down.lb2 "$TMP"/down.lb3 "$TMP"/down.vip)
	read -r should moved total_kept kept < <(paste "$TMP/agree.vip" "$TMP/down.vip" | awk -v v="b$victim" '
		$2 == v { should++; if ($4 != v && $4 !~ /^!/) moved++; next }
		{ others++; if ($4 == $2) kept++ }
		END { print should + 0, moved + 0, others + 0, kept + 0 }')
	log "all 3 instances marked b$victim down ${t_down} ms after it died"
	log "moved $moved (= clients of b$victim: $should), others kept $kept/$total_kept," \
		"instances agree $n/$CLIENTS"
	log "clients per backend now: $(spread "$TMP/down.vip")"
	[ "$n" -eq "$CLIENTS" ] || fail $s "instances agree on $n/$CLIENTS $(failures "$TMP"/down.*)"
	if [ "$moved" -ne "$should" ] || [ "$should" -eq 0 ]; then
		fail $s "moved $moved of b$victim's $should clients"
	fi
	[ "$kept" -eq "$total_kept" ] || fail $s "others kept only $kept/$total_kept"
	pass $s "moved $moved (= clients of b$victim), others kept $kept/$total_kept," \
		"instances agree $n/$CLIENTS"

	start_backend "$victim"
	wait_until 5000 all_instances_say "$victim" up "${INSTANCES[@]}" ||
		fail $s "b$victim did not come back up everywhere"
	tags "$VIP:$PORT" "$TMP/back.vip"
	n=$(agreeing "$TMP/agree.vip" "$TMP/back.vip")
	[ "$n" -eq "$CLIENTS" ] || fail $s "after b$victim returned: $n/$CLIENTS on their backend"
	log "b$victim back: $n/$CLIENTS clients on their original backend again"
}

step_hung_instance() {
	local s=hung-instance i=1 t0 t_gone n t_back
	tags "$VIP:$PORT" "$TMP/before-hang.vip"
	t0=$(now_ms)
	kill -STOP "${BIRD_PID[lb$i]}" # hung: no BGP notification, no BFD "down"
	kill -KILL "${LB_PID[$i]}" "${WATCHDOG_PID[$i]}"
	wait "${LB_PID[$i]}" "${WATCHDOG_PID[$i]}" 2>/dev/null || true
	wait_until 5000 lacks_path "198.18.1$i.2" || fail $s "lb$i's path is still there"
	t_gone=$(($(now_ms) - t0))
	log "router after lb$i hung: $(vip_paths)"
	tags "$VIP:$PORT" "$TMP/after-hang.vip"
	n=$(agreeing "$TMP/before-hang.vip" "$TMP/after-hang.vip")
	log "lb$i's route withdrawn ${t_gone} ms after it hung; $((CLIENTS - n)) of $CLIENTS" \
		"clients moved"
	[ "$t_gone" -lt 2000 ] || fail $s "withdrawal took ${t_gone} ms (limit 2000)"
	[ "$(path_count)" -eq 2 ] || fail $s "paths now: $(vip_paths)"
	[ "$n" -eq "$CLIENTS" ] || fail $s "$((CLIENTS - n)) clients moved $(failures "$TMP/after-hang.vip")"
	pass $s "hung lb$i withdrawn in ${t_gone} ms (BFD), moved 0/$CLIENTS clients"

	# clean up: the hung bird goes, and the instance starts afresh and rejoins
	kill -KILL "${BIRD_PID[lb$i]}"
	wait "${BIRD_PID[lb$i]}" 2>/dev/null || true
	rm -f "$TMP/bird-lb$i.ctl"
	t0=$(now_ms)
	start_lb "$i"
	start_bird "lb$i" "$(ns_lb "$i")"
	wait_until 10000 lb_answers "$i" || fail $s "lb$i did not restart"
	start_watchdog "$i"
	wait_until 20000 has_paths 3 || fail $s "lb$i did not rejoin: $(vip_paths)"
	t_back=$(($(now_ms) - t0))
	tags "$VIP:$PORT" "$TMP/rejoined.vip"
	n=$(agreeing "$TMP/before-hang.vip" "$TMP/rejoined.vip")
	[ "$n" -eq "$CLIENTS" ] || fail $s "after lb$i rejoined: $n/$CLIENTS on their backend"
	log "lb$i restarted: back in the route after ${t_back} ms; $n/$CLIENTS clients unmoved"
}

step_drain() {
	local s=drain-withdraw i=2 t0 t_gone t_exit rc
	stream_start stream-withdraw
	sleep 1
	lbctl "$i" withdraw >/dev/null || fail $s "lbctl withdraw failed"
	t0=$(now_ms)
	[ "$(lbctl "$i" ready 2>&1 || true)" = "not ready: withdrawn" ] ||
		fail $s "lbctl ready does not say withdrawn"
	wait_until 5000 lacks_path "198.18.1$i.2" || fail $s "lb$i's path is still there"
	t_gone=$(($(now_ms) - t0))
	sleep 0.3 # packets already in flight towards lb$i
	kill -TERM "${LB_PID[$i]}"
	wait_exit "${LB_PID[$i]}" 10000 || fail $s "lb$i did not stop"
	rc=0
	wait "${LB_PID[$i]}" || rc=$?
	t_exit=$(($(now_ms) - t0))
	sleep 0.5
	stream_stop
	log "lbctl withdraw: route gone after ${t_gone} ms; SIGTERM; lb$i exited (status $rc)" \
		"${t_exit} ms after the withdraw"
	check_stream $s stream-withdraw
	[ "$rc" -eq 0 ] || fail $s "lb$i exited with status $rc"
	pass $s "lbctl withdraw then SIGTERM under new connections: $STREAM_SUMMARY"

	s=drain-sigterm
	i=3
	stream_start stream-sigterm
	sleep 1
	t0=$(now_ms)
	kill -TERM "${LB_PID[$i]}"
	wait_until 5000 lacks_path "198.18.1$i.2" || fail $s "lb$i's path is still there"
	t_gone=$(($(now_ms) - t0))
	wait_exit "${LB_PID[$i]}" 10000 || fail $s "lb$i did not stop"
	rc=0
	wait "${LB_PID[$i]}" || rc=$?
	t_exit=$(($(now_ms) - t0))
	sleep 0.5
	stream_stop
	log "SIGTERM (withdraw_delay ${WITHDRAW_DELAY_MS} ms): route gone after ${t_gone} ms," \
		"lb$i exited (status $rc) after ${t_exit} ms"
	check_stream $s stream-sigterm
	[ "$rc" -eq 0 ] || fail $s "lb$i exited with status $rc"
	[ "$t_gone" -lt "$WITHDRAW_DELAY_MS" ] ||
		fail $s "the route went only after the listeners may have closed"
	pass $s "SIGTERM with withdraw_delay alone under new connections: $STREAM_SUMMARY"
}

T_START=$(now_ms)
echo "fleet test: 3 lb instances, bird2 BGP+BFD, ECMP router, $CLIENTS clients (tmp $TMP)"
step_kit
step_announce
step_ecmp_moves
step_agree
step_backend_down
step_hung_instance
step_drain
echo "fleet test: all steps passed in $(($(now_ms) - T_START)) ms"

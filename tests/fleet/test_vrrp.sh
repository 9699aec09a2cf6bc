#!/usr/bin/env bash
# test_vrrp: two lb instances share a VIP with keepalived (VRRP), active/passive, using
# examples/fleet/keepalived.conf with its addresses and priorities rewritten.
#
# lbA (priority 150) and lbB (100) sit on one bridge with the client and two tagged
# backends. lbA wins the election; `lbctl withdraw` on lbA turns its /ready to 503, the
# track_script fails and the VIP moves to lbB while new connections keep coming; after
# `lbctl rejoin` the VIP stays on lbB (nopreempt); withdrawing lbB brings it back to lbA.
#
# Needs root, `ip netns`, keepalived and curl; exits 77 (ctest: skipped) without them.
# Every address is in 198.18.50.0/24 inside namespaces this script creates and deletes.
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

VIP=198.18.50.100
PORT=7000
CLIENT=198.18.50.1
declare -A ADDR=([A]=198.18.50.11 [B]=198.18.50.12)
declare -A PRIO=([A]=150 [B]=100)
# keepalived's script runs every second and the peer takes over within about a second
# more; 5 s of withdraw_delay would cover a SIGTERM too (this test drains with withdraw)
MOVE_LIMIT_MS=10000
# From the old MASTER's FAULT (it drops the VIP) to the new one's takeover (after its skew
# time) nobody holds the VIP: a SYN sent then is lost and TCP resends it after 1 s. The
# client's connections run one after another, so one that hangs must not hide the rest.
STREAM_TIMEOUT_MS=2000
# connections lost in that gap (timeouts, not refusals) allowed per move
MAX_GAP_TIMEOUTS=2

FAILED=0
LAST_ERR=
trap 'LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR

fail() {
	echo "FAIL [$1] ${*:2}"
	FAILED=1
	dump_logs
	exit 1
}

dump_logs() {
	[ -n "${TMP:-}" ] && [ -d "$TMP" ] || return 0
	local f
	for f in "$TMP"/*.log; do
		[ -s "$f" ] || continue
		echo "---- ${f##*/} (last 25 lines)"
		tail -n 25 "$f"
	done
	KEEP_TMP=1
	echo "(logs and configs kept in $TMP)"
}

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v keepalived >/dev/null || skip "keepalived is not installed (apt-get install keepalived)"
command -v curl >/dev/null || skip "curl is not installed (the track_script uses it)"
for bin in "$LB_BIN" "$LBCTL_BIN" "$LB_TESTSRV_BIN" "$FLEET_CLIENT_BIN"; do
	[ -x "$bin" ] || {
		echo "FAIL: $bin is not built (make build)"
		exit 1
	}
done

ID=lbv$$
NS_LAN=$ID-lan
CREATED_NS=()
PIDS=()
declare -A KA_PID
TMP=$(mktemp -d /tmp/lb-vrrp.XXXXXX)
KEEP_TMP=${KEEP_TMP:-0}

cleanup() {
	local rc=$? pid ns
	if [ "$rc" -ne 0 ] && [ "$rc" -ne "$SKIP" ] && [ "$FAILED" -eq 0 ]; then
		echo "FAIL [setup] exit status $rc after a failed command (${LAST_ERR:-unknown})"
		dump_logs
	fi
	# keepalived first, gently: its VRRP child follows the parent and drops the VIP
	for pid in "${KA_PID[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${KA_PID[@]}"; do
		wait_exit "$pid" 3000 || true
	done
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

# One bridge in the lan namespace: the client and the backends live there, each lb
# namespace hangs off it with a veth (eth0), as two hosts on one LAN segment.
setup_network() {
	local x
	add_ns "$NS_LAN" || skip "cannot create network namespaces (ip netns add failed)"
	ip -n "$NS_LAN" link add br0 type bridge
	ip -n "$NS_LAN" link set br0 up
	ip -n "$NS_LAN" addr add "$CLIENT/24" dev br0
	ip -n "$NS_LAN" addr add 198.18.50.21/32 dev br0
	ip -n "$NS_LAN" addr add 198.18.50.22/32 dev br0
	for x in A B; do
		add_ns "$(ns_lb $x)"
		ip link add eth0 netns "$(ns_lb $x)" type veth peer name "port$x" netns "$NS_LAN"
		ip -n "$NS_LAN" link set "port$x" master br0 up
		ip -n "$(ns_lb $x)" addr add "${ADDR[$x]}/24" dev eth0
		ip -n "$(ns_lb $x)" link set eth0 up
	done
}

write_lb_config() {
	cat >"$TMP/lb$1.json" <<-EOF
		{
		  "engine": "${LB_ENGINE:-auto}",
		  "withdraw_delay": "5s",
		  "shutdown_grace": "2s",
		  "metrics": { "listen": "127.0.0.1:9100" },
		  "control": { "socket": "$TMP/lb$1.sock" },
		  "listeners": [
		    { "name": "vip", "listen": "$VIP:$PORT", "freebind": true, "pool": "app" }
		  ],
		  "pools": [
		    {
		      "name": "app",
		      "algorithm": "ip_hash",
		      "health": { "type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2 },
		      "backends": [
		        { "name": "b1", "address": "198.18.50.21:8000" },
		        { "name": "b2", "address": "198.18.50.22:8000" }
		      ]
		    }
		  ]
		}
	EOF
}

# The kit's keepalived.conf with this instance's router_id, priority and the test's VIP.
write_keepalived_config() {
	local f=$TMP/keepalived-$1.conf
	sed -e "s/^\([[:space:]]*router_id\) .*/\1 lb$1/" \
		-e "s/^\([[:space:]]*priority\) [0-9]*/\1 ${PRIO[$1]}/" \
		-e "s|198\.51\.100\.10/32|$VIP/32|" "$KIT/keepalived.conf" >"$f"
	if ! grep -q "priority ${PRIO[$1]}" "$f" || ! grep -q "$VIP/32" "$f"; then
		fail kit "keepalived.conf: cannot set priority/VIP"
	fi
	# keepalived 2.2.7's -t kills itself (status 143) after checking a script that runs as
	# another user than its own: check a copy with script_user root
	sed 's/^\([[:space:]]*script_user\) .*/\1 root/' "$f" >"$f.check"
	keepalived -t -f "$f.check" -l || fail kit "keepalived rejects $f"
}

start_lb() {
	ip netns exec "$(ns_lb "$1")" "$LB_BIN" -c "$TMP/lb$1.json" >>"$TMP/lb$1.log" 2>&1 &
	PIDS+=($!)
}

start_keepalived() {
	ip netns exec "$(ns_lb "$1")" keepalived -n -l -D -G -P -f "$TMP/keepalived-$1.conf" \
		-p "$TMP/keepalived-$1.pid" -r "$TMP/keepalived-vrrp-$1.pid" \
		>>"$TMP/keepalived-$1.log" 2>&1 &
	KA_PID[$1]=$!
	PIDS+=($!)
}

lbctl() {
	local x=$1
	shift
	"$LBCTL_BIN" -s "$TMP/lb$x.sock" "$@"
}

lb_answers() {
	lbctl "$1" status >/dev/null 2>&1
}

is_ready() {
	[ "$(lbctl "$1" ready 2>/dev/null || true)" = ready ]
}

has_vip() {
	[ -n "$(ip -n "$(ns_lb "$1")" -o addr show dev eth0 to "$VIP/32")" ]
}

# holder: which instance has the VIP now ("A", "B", "none" or "both")
holder() {
	local a=0 b=0
	has_vip A && a=1
	has_vip B && b=1
	case $a$b in
	10) echo A ;;
	01) echo B ;;
	00) echo none ;;
	*) echo both ;;
	esac
}

held_by() {
	[ "$(holder)" = "$1" ]
}

# arp_owner: whose MAC the client's neighbour entry for the VIP holds, and its state
arp_owner() {
	local entry mac x owner=unknown
	entry=$(ip -n "$NS_LAN" neigh show "$VIP" dev br0)
	mac=$(awk '{print $3}' <<<"$entry")
	for x in A B; do
		if [ "$(ip netns exec "$(ns_lb $x)" cat /sys/class/net/eth0/address)" = "$mac" ]; then
			owner=lb$x
		fi
	done
	echo "$owner ($entry)"
}

vip_accepted() {
	lbctl "$1" status 2>/dev/null | awk '$1 == "vip" && $2 == "tcp" {print $6}'
}

connect_once() {
	local out
	out=$(ip netns exec "$NS_LAN" "$FLEET_CLIENT_BIN" tags --dst "$VIP:$PORT" --src "$CLIENT" \
		--count 1 --timeout 2000) || return 1
	[[ $out != *" !"* ]]
}

stream_start() {
	ip netns exec "$NS_LAN" "$FLEET_CLIENT_BIN" stream --dst "$VIP:$PORT" --src "$CLIENT" \
		--count 1 --duration 60000 --every 10 --timeout "$STREAM_TIMEOUT_MS" \
		>"$TMP/$1.out" 2>"$TMP/$1.log" &
	STREAM_PID=$!
	PIDS+=($!)
}

stream_stop() {
	kill -TERM "$STREAM_PID" 2>/dev/null || true
	wait "$STREAM_PID" || true
}

# stream_summary STEP NAME: print the totals; refusals fail the step (lb kept serving)
stream_summary() {
	local f=$TMP/$2.out ok refused reset timeout unreach
	[ -s "$f" ] || fail "$1" "the client stream printed no totals"
	ok=$(stream_figure "$f" ok)
	refused=$(stream_figure "$f" refused)
	reset=$(stream_figure "$f" reset)
	timeout=$(stream_figure "$f" timeout)
	unreach=$(stream_figure "$f" unreachable)
	log "stream: ok=$ok refused=$refused reset=$reset timeout=$timeout unreachable=$unreach"
	sed 's/^/    /' "$TMP/$2.log"
	[ "$ok" -gt 50 ] || fail "$1" "only $ok connections succeeded"
	[ "$refused" -eq 0 ] || fail "$1" "$refused connections refused"
	[ "$unreach" -eq 0 ] || fail "$1" "$unreach connections unreachable"
	[ "$timeout" -le "$MAX_GAP_TIMEOUTS" ] || fail "$1" "$timeout connections timed out"
	if [ "$timeout" -gt 0 ]; then
		log "the $timeout timeout(s): a connection started while neither instance held" \
			"the VIP (VRRP hands over after the old MASTER has dropped it). Not a refusal."
	fi
	STREAM_SUMMARY="ok=$ok refused=$refused reset=$reset timeout=$timeout"
}

# move STEP FROM TO NAME: `lbctl withdraw` on FROM under a stream of new connections;
# the VIP must end up on TO only
move() {
	local s=$1 from=$2 to=$3 t0 t_move before after
	before=$(vip_accepted "$to")
	stream_start "$4"
	sleep 1
	lbctl "$from" withdraw >/dev/null || fail "$s" "lbctl withdraw on lb$from failed"
	t0=$(now_ms)
	wait_until "$MOVE_LIMIT_MS" held_by "$to" || fail "$s" "VIP held by: $(holder)"
	t_move=$(($(now_ms) - t0))
	sleep 2
	stream_stop
	after=$(vip_accepted "$to")
	log "lbctl withdraw on lb$from: VIP on lb$to ${t_move} ms later;" \
		"lb$to accepted $((after - before)) connections meanwhile"
	log "the client's ARP entry for the VIP: $(arp_owner)"
	stream_summary "$s" "$4"
	[ "$after" -gt "$before" ] || fail "$s" "lb$to served nothing"
	MOVE_MS=$t_move
}

step_elect() {
	local s=vrrp-elect x before
	setup_network
	ip netns exec "$NS_LAN" "$LB_TESTSRV_BIN" --mode tagged --listen 198.18.50.21:8000 \
		--name b1 --listen 198.18.50.22:8000 --name b2 >>"$TMP/backends.log" 2>&1 &
	PIDS+=($!)
	for x in A B; do
		write_lb_config $x
		write_keepalived_config $x
		start_lb $x
	done
	for x in A B; do
		wait_until 10000 lb_answers $x || fail $s "lb$x did not start"
		wait_until 5000 is_ready $x || fail $s "lb$x is not ready"
	done
	[ "$(holder)" = none ] || fail $s "the VIP is on an instance before keepalived runs"
	log "lbA and lbB listen on $VIP:$PORT before either holds it (freebind), both ready"
	for x in A B; do
		start_keepalived $x
	done
	wait_until 15000 held_by A || fail $s "VIP held by: $(holder) (lbA has the higher priority)"
	before=$(vip_accepted A)
	for x in 1 2 3 4 5; do
		connect_once || fail $s "no answer through the VIP"
	done
	[ "$(vip_accepted A)" -eq $((before + 5)) ] || fail $s "lbA did not serve the VIP"
	[ "$(vip_accepted B)" -eq 0 ] || fail $s "lbB served the VIP while BACKUP"
	pass $s "lbA (priority 150) is MASTER: the VIP is on lbA only and lbA serves it"
}

step_withdraw() {
	local s=vrrp-withdraw
	move $s A B stream-a-to-b
	pass $s "VIP moved to lbB ${MOVE_MS} ms after lbctl withdraw on lbA, while lbA" \
		"kept serving: $STREAM_SUMMARY"
}

step_nopreempt() {
	local s=vrrp-nopreempt
	lbctl A rejoin >/dev/null || fail $s "lbctl rejoin failed"
	wait_until 5000 is_ready A || fail $s "lbA not ready after rejoin"
	# the track script passes again within its interval (1 s) and rise (2); then lbA is a
	# BACKUP that could preempt; give it a few advertisements to (not) do so
	sleep 4
	[ "$(holder)" = B ] || fail $s "VIP held by $(holder) after lbA rejoined (nopreempt)"
	pass $s "lbA rejoined and is ready; the VIP stays on lbB (nopreempt: no second move)"
}

step_move_back() {
	local s=vrrp-move-back
	move $s B A stream-b-to-a
	lbctl B rejoin >/dev/null || fail $s "lbctl rejoin on lbB failed"
	pass $s "withdrawing lbB moved the VIP back to lbA in ${MOVE_MS} ms: $STREAM_SUMMARY"
}

T_START=$(now_ms)
echo "vrrp test: 2 lb instances, keepalived active/passive on one LAN (tmp $TMP)"
step_elect
step_withdraw
step_nopreempt
step_move_back
echo "vrrp test: all steps passed in $(($(now_ms) - T_START)) ms"

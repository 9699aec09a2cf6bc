#!/usr/bin/env bash
# bench/redis_tail.sh — where the p99 of `redis-benchmark -c 50` through a balancer comes from
# (docs/BENCHMARKS-redis.md). Runs variants of one set-up interleaved, round after round: a
# fresh redis-server (no persistence) and balancer per run, then
#   redis-benchmark -h 127.0.0.1 -p PORT -c 50 -n REQUESTS -t get --csv
# and prints per run the rate, p50/p95/p99/max, the balancer's CPU time and context switches,
# then the medians per variant.
#
# Usage: bash bench/redis_tail.sh [--rounds N] [--requests N] [--sched DIR] VARIANT...
#   VARIANT: SYSTEM[,workers=N][,pin][,env=NAME=VALUE]  SYSTEM: lb-uring | lb-epoll | haproxy
#     workers=N  worker threads (default: nproc)
#     pin        redis-benchmark on CPU 0, redis-server and the balancer on CPU 1
#     env=K=V    put K=V in the balancer's environment (e.g. env=LB_URING_BATCH=0)
#   --sched DIR  also record `perf sched` during each run and print the scheduling delay and
#                on-CPU stretch per task (needs perf; files kept in DIR)
# Env: LB_BIN (default build/lb).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3
REQUESTS=100000
SCHED=
LB_BIN=${LB_BIN:-$ROOT/build/lb}

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=${2:?}; shift ;;
	--requests) REQUESTS=${2:?}; shift ;;
	--sched) SCHED=${2:?}; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "redis_tail.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
for t in redis-server redis-benchmark taskset; do
	command -v "$t" >/dev/null || { echo "redis_tail.sh: $t not found (scripts/deps.sh bench)" >&2; exit 1; }
done
[ -z "$SCHED" ] || command -v perf >/dev/null || { echo "redis_tail.sh: --sched needs perf" >&2; exit 1; }
[ -z "$SCHED" ] || mkdir -p "$SCHED"

TMP=$(mktemp -d /tmp/lb-redis-tail.XXXXXX)
RESULTS="$TMP/results"
: >"$RESULTS"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_listen() { # wait_listen PORT PID: until PORT listens (10 s) or PID dies
	for _ in $(seq 100); do
		[ -n "$(ss -Htln "( sport = :$1 )")" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

thread_stats() { # thread_stats PID: "cpu_ticks voluntary involuntary" summed over its threads
	local t ticks=0 vol=0 inv=0 f
	for t in /proc/"$1"/task/*; do
		read -r -a f < <(sed 's/.*) //' "$t/stat")
		ticks=$((ticks + f[11] + f[12]))
		vol=$((vol + $(awk '/^voluntary_ctxt/ {print $2}' "$t/status")))
		inv=$((inv + $(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")))
	done
	echo "$ticks $vol $inv"
}

run_variant() { # run_variant ROUND VARIANT
	local round=$1 spec=$2 sys workers pin=0 envs=() optv=() opt rp lp rpid bpid pre=() line
	local c0 v0 i0 c1 v1 i1 tck
	sys=${spec%%,*}
	workers=$(nproc)
	IFS=, read -r -a optv <<<"${spec#"$sys"}"
	for opt in "${optv[@]}"; do
		case "$opt" in
		'') ;;
		workers=*) workers=${opt#workers=} ;;
		pin) pin=1 ;;
		env=*) envs+=("${opt#env=}") ;;
		*) echo "redis_tail.sh: unknown option $opt in $spec" >&2; exit 2 ;;
		esac
	done
	[ "$pin" = 1 ] && pre=(taskset -c 1)
	rp=$(free_port) lp=$(free_port)
	"${pre[@]}" redis-server --bind 127.0.0.1 --port "$rp" --save '' --appendonly no \
		--daemonize no --protected-mode no >"$TMP/redis.log" 2>&1 &
	rpid=$!
	PIDS+=("$rpid")
	wait_listen "$rp" "$rpid" || { echo "redis-server did not start" >&2; exit 1; }
	case "$sys" in
	lb-uring | lb-epoll)
		cat >"$TMP/lb.json" <<-EOF
			{ "engine": "$([ "$sys" = lb-uring ] && echo io_uring || echo epoll)", "workers": $workers,
			  "shutdown_grace": "1s", "log": { "level": "warn", "access": false },
			  "listeners": [ { "name": "redis", "protocol": "tcp", "listen": "127.0.0.1:$lp", "pool": "redis" } ],
			  "pools": [ { "name": "redis", "algorithm": "round_robin", "health": { "type": "none" },
			    "backends": [ { "name": "redis", "address": "127.0.0.1:$rp" } ] } ] }
		EOF
		env "${envs[@]}" "${pre[@]}" "$LB_BIN" -c "$TMP/lb.json" >"$TMP/bal.log" 2>&1 &
		;;
	haproxy)
		cat >"$TMP/haproxy.cfg" <<-EOF
			global
			    nbthread $workers
			defaults
			    mode tcp
			    timeout connect 2s
			    timeout client 5m
			    timeout server 5m
			frontend redis
			    bind 127.0.0.1:$lp
			    default_backend redis
			backend redis
			    server s1 127.0.0.1:$rp
		EOF
		env "${envs[@]}" "${pre[@]}" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/bal.log" 2>&1 &
		;;
	*) echo "redis_tail.sh: unknown system $sys" >&2; exit 2 ;;
	esac
	bpid=$!
	PIDS+=("$bpid")
	wait_listen "$lp" "$bpid" || { echo "$sys did not start:" >&2; cat "$TMP/bal.log" >&2; exit 1; }
	local client=(redis-benchmark -h 127.0.0.1 -p "$lp" -c 50 -n "$REQUESTS" -t get --csv)
	[ "$pin" = 1 ] && client=(taskset -c 0 "${client[@]}")
	local data="$SCHED/r$round-${spec//[^a-zA-Z0-9=_-]/_}.data"
	[ -n "$SCHED" ] && client=(perf sched record -q -o "$data" -- "${client[@]}")
	read -r c0 v0 i0 < <(thread_stats "$bpid")
	line=$(timeout -k 2 120 "${client[@]}" 2>/dev/null | grep '^"GET"' | tail -1 | tr -d '"') || true
	read -r c1 v1 i1 < <(thread_stats "$bpid")
	kill "$bpid" "$rpid" 2>/dev/null || true
	wait "$bpid" "$rpid" 2>/dev/null || true
	PIDS=()
	[ -n "$line" ] || { echo "$spec: redis-benchmark gave no result" >&2; return 0; }
	tck=$(getconf CLK_TCK)
	IFS=, read -r _ rps _ _ p50 p95 p99 max <<<"$line"
	printf '%-28s rps %9s p50 %s p95 %s p99 %s max %s | cpu %5.2fs ctxt vol %6d invol %5d\n' \
		"$spec" "$rps" "$p50" "$p95" "$p99" "$max" "$(awk -v t=$((c1 - c0)) -v h="$tck" 'BEGIN {print t / h}')" \
		$((v1 - v0)) $((i1 - i0)) | tee -a "$RESULTS"
	if [ -n "$SCHED" ]; then
		perf sched timehist -i "$data" 2>/dev/null | python3 "$ROOT/bench/helper.py" sched
	fi
}

for round in $(seq 1 "$ROUNDS"); do
	echo "# round $round/$ROUNDS"
	for v in "$@"; do run_variant "$round" "$v"; done
done

echo "# medians over $ROUNDS round(s): rps, p50, p99 (ms); then every run's p99"
for v in "$@"; do
	grep -F "$v " "$RESULTS" | awk -v v="$v" '$1 == v' >"$TMP/one" || true
	[ -s "$TMP/one" ] || continue
	med() { awk -v c="$1" '{print $c}' "$TMP/one" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
	printf '%-28s %9s %6s %6s   p99s: %s\n' "$v" "$(med 3)" "$(med 5)" "$(med 9)" \
		"$(awk '{printf "%s ", $9}' "$TMP/one")"
done

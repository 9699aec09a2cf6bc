#!/usr/bin/env bash
# bench/health_overhead.sh — does active health checking cost the data plane anything?
# 200 HTTP backends; lb with an http check every 100 ms on all of them ("on") vs health
# "none" ("off"), and a control ("ctl"): checks off in the measured lb while a second,
# idle lb performs the same checks on the same backends, so the machine carries the same
# probing load but no probe runs inside the measured process. The order of the modes
# rotates between rounds. wrk measures the new-connection rate (Connection: close) and the
# keep-alive rate; lb's CPU time is split by thread (workers vs prober) and the checks it
# performs are counted with perf (the TCP connections its prober thread opens, one per
# check), so lb runs at log level info with no line per check. Prints a markdown table and
# writes it to docs/bench-raw/health_overhead.md.
#
# Usage: bash bench/health_overhead.sh [--quick] [--rounds N] [--no-control]
#                       [--check http|tcp] [--timeout T] [--engine auto|epoll|io_uring]
#                       [--log-level info|debug]
#   --quick       1 round of 2 s runs (about 25 s); the full run is 5 rounds of 5 s (< 4 min)
#   --no-control  only "off" and "on" (alternating)
#   --timeout T   check timeout (default 50ms); on a starved machine checks then time out,
#                 backends flap DOWN and the report says so
#   --log-level   info (default); debug also logs every check, at a cost of its own, and
#                 counts failed checks; without perf, checks are then counted from the log
# Env: LB_BIN, LB_TESTSRV (default build/lb, build/lb-testsrv), HEALTH_BENCH_BUDGET
#      (seconds, default 215), BENCH_KEEP_TMP=1 (keep the temp dir with the logs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$ROOT/bench/helper.py"
HHELPER="$ROOT/bench/health_helper.py"

QUICK=0
ROUNDS=
MODES="off ctl on"
CHECK=http
ENGINE=auto
LOG_LEVEL=info
N_BACKENDS=200
INTERVAL=100ms
TIMEOUT=50ms
PER_PROC=50 # lb-testsrv serves at most 64 listeners per process
WORKERS=$(nproc)
WRK_CONNS=50

usage() {
	sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
	--no-control) MODES="off on" ;;
	--check) CHECK=${2:?--check needs a type}; shift ;;
	--timeout) TIMEOUT=${2:?--timeout needs a duration}; shift ;;
	--engine) ENGINE=${2:?--engine needs a name}; shift ;;
	--log-level) LOG_LEVEL=${2:?--log-level needs a level}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "health_overhead.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case "$ROUNDS" in '' | [1-9] | [1-9][0-9]) ;; *) echo "health_overhead.sh: --rounds wants 1..99" >&2; exit 2 ;; esac
case "$TIMEOUT" in [1-9]*ms | [1-9]*s) ;; *) echo "health_overhead.sh: --timeout wants e.g. 50ms" >&2; exit 2 ;; esac
case "$CHECK" in http | tcp) ;; *) echo "health_overhead.sh: --check wants http or tcp" >&2; exit 2 ;; esac
case "$ENGINE" in auto | epoll | io_uring) ;; *) echo "health_overhead.sh: bad --engine" >&2; exit 2 ;; esac
case "$LOG_LEVEL" in debug | info) ;; *) echo "health_overhead.sh: --log-level wants debug or info" >&2; exit 2 ;; esac

if [ "$QUICK" = 1 ]; then
	ROUNDS=${ROUNDS:-1} T_WRK=2 T_IDLE=1
else
	ROUNDS=${ROUNDS:-5} T_WRK=5 T_IDLE=1
fi
BUDGET=${HEALTH_BENCH_BUDGET:-215}

LB_BIN=${LB_BIN:-$ROOT/build/lb}
LB_TESTSRV=${LB_TESTSRV:-$ROOT/build/lb-testsrv}
for b in "$LB_BIN" "$LB_TESTSRV"; do
	[ -x "$b" ] || { echo "health_overhead.sh: $b not found (build first: make)" >&2; exit 2; }
done
for t in wrk python3 ss timeout; do
	command -v "$t" >/dev/null 2>&1 || { echo "health_overhead.sh: $t is missing" >&2; exit 2; }
done

log() { printf '[health-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Every check opens one TCP connection from the prober thread of the lb that probes: its
# moves into SYN_SENT (newstate 2) count the checks. A tracepoint on that one thread, not
# a syscall counter, so no other thread's syscalls take a slower path while it counts.
PERF_COUNT=(-e sock:inet_sock_set_state --filter 'newstate == 2')
if command -v perf >/dev/null 2>&1 && perf stat "${PERF_COUNT[@]}" -- true >/dev/null 2>&1; then
	COUNT_BY=perf
elif [ "$LOG_LEVEL" = debug ]; then
	COUNT_BY=log
else
	COUNT_BY=none
	log "warning: perf cannot count checks here (run as root, or use --log-level debug)"
fi

# ------------------------------------------------------------ processes, ports

TMP=$(mktemp -d /tmp/lb-health-bench.XXXXXX)
PIDS=()

# kill_tree, cleanup (trap on EXIT), start_bg, stop_pid
# shellcheck source-path=SCRIPTDIR source=proc.sh
. "$(dirname "$0")/proc.sh"

# A block of N+1 consecutive free loopback ports below the ephemeral range (32768+):
# the two lb listeners, then the backends (alloc_block N_BACKENDS+1).
alloc_block() {
	local n=$1 base used
	used=$(ss -Htan | awk '{ sub(/.*:/, "", $4); print $4 }' | sort -un)
	for _ in $(seq 50); do
		base=$((21000 + RANDOM % 11000))
		[ $((base + n)) -lt 32768 ] || continue
		if ! awk -v lo="$base" -v hi="$((base + n))" '$1 >= lo && $1 <= hi { f = 1 } END { exit !f }' \
			<<<"$used"; then
			echo "$base"
			return 0
		fi
	done
	return 1
}

wait_listen() { # wait_listen PORT PID: until PORT listens (10 s), or PID dies
	local port=$1 pid=$2
	for _ in $(seq 100); do
		[ -n "$(ss -Htln "( sport = :$port )")" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

count() { # count PATTERN FILE: matching lines (0 when none)
	grep -c -- "$1" "$2" 2>/dev/null || true
}

counted() { # counted OUT CMD...: run CMD; meanwhile perf counts the checks into OUT
	local out=$1
	shift
	if [ "$COUNT_BY" = perf ] && [ -n "$COUNT_TID" ]; then
		perf stat --no-big-num -o "$out" "${PERF_COUNT[@]}" -t "$COUNT_TID" -- "$@"
	else
		"$@"
	fi
}

perf_rate() { # perf_rate OUT: checks per second of the command counted() ran, NA without
	awk '/inet_sock_set_state/ { n = $1 } / seconds time elapsed/ { s = $1 }
		END { if (n ~ /^[0-9]+$/ && s + 0 > 0) printf "%.0f", n / s; else print "NA" }' "$1" 2>/dev/null ||
		echo NA
}

checks_between() { # checks_between T0 T1 FILE: checks lb logged in [T0, T1) (epoch seconds)
	local a b
	a=$(date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.%3NZ)
	b=$(date -u -d "@$2" +%Y-%m-%dT%H:%M:%S.%3NZ)
	# lb's text log lines start with an ISO-8601 UTC timestamp, which sorts as a string.
	awk -v a="$a" -v b="$b" '$1 >= a && $1 < b && / check of / { n++ } END { print n + 0 }' "$3"
}

# -------------------------------------------------------------------- backends

BASE=$(alloc_block $((N_BACKENDS + 1))) || { log "no block of $((N_BACKENDS + 2)) free ports"; exit 1; }
LB_PORT=$BASE
CHK_PORT=$((BASE + 1))
BACKEND_BASE=$((BASE + 2))
BACKEND_PIDS=()

start_backends() {
	local first i pid args
	for ((first = 0; first < N_BACKENDS; first += PER_PROC)); do
		args=()
		for ((i = first; i < first + PER_PROC && i < N_BACKENDS; i++)); do
			args+=(--listen "127.0.0.1:$((BACKEND_BASE + i))" --name "b$i")
		done
		start_bg pid "$TMP/testsrv-$first.log" "$LB_TESTSRV" --mode http "${args[@]}"
		BACKEND_PIDS+=("$pid")
	done
	# The last port of each process listening means all of that process's ports do.
	for ((first = 0; first < N_BACKENDS; first += PER_PROC)); do
		i=$((first + PER_PROC - 1))
		[ "$i" -lt "$N_BACKENDS" ] || i=$((N_BACKENDS - 1))
		wait_listen "$((BACKEND_BASE + i))" "${BACKEND_PIDS[$((first / PER_PROC))]}" || {
			log "lb-testsrv did not start: $(head -3 "$TMP/testsrv-$first.log")"
			exit 1
		}
	done
}

# -------------------------------------------------------------------------- lb

record() { # record MODE METRIC VALUE
	printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RESULTS"
}

LB_PID=
LB_LOG=
CHK_PID=
CHK_LOG=
COUNT_LOG= # the log of the lb that probes: the measured lb's, or the control checker's
COUNT_TID= # that lb's prober thread (the measured lb's when checks are off)

# start_lb VAR LOG NAME PORT TYPE: an lb with every backend checked by TYPE (or none)
start_lb() {
	local var=$1 logf=$2 name=$3 port=$4 type=$5 cfg pid
	cfg="$TMP/lb-$name.json"
	python3 "$HHELPER" config "$cfg" "$ENGINE" "$WORKERS" "$LOG_LEVEL" "$port" \
		"$BACKEND_BASE" "$N_BACKENDS" "$type" "$INTERVAL" "$TIMEOUT"
	"$LB_BIN" -c "$cfg" --check >"$TMP/check.log" 2>&1 || {
		log "lb --check rejected $cfg: $(head -3 "$TMP/check.log")"
		exit 1
	}
	start_bg pid "$logf" "$LB_BIN" -c "$cfg"
	wait_listen "$port" "$pid" || { log "lb did not start: $(tail -3 "$logf")"; exit 1; }
	printf -v "$var" '%s' "$pid"
}

wait_up() { # wait_up LOG: until every backend has passed its first check (10 s); prints the count
	local logf=$1 up=0
	for _ in $(seq 100); do
		up=$(count ' is UP' "$logf")
		[ "$up" -ge "$N_BACKENDS" ] && break
		sleep 0.1
	done
	[ "$up" -ge "$N_BACKENDS" ] || log "warning: only $up of $N_BACKENDS backends UP after 10 s"
	echo "$up"
}

threads_cpu() { # threads_cpu: lb's 'total main workers prober other', backends' CPU seconds,
	# the time, the machine's 'busy all steal' CPU seconds, the control checker's CPU seconds
	local line chk=NA
	line=$(python3 "$HHELPER" threads "$LB_PID" "$WORKERS" "${BACKEND_PIDS[@]}")
	[ -n "$CHK_PID" ] && chk=$(python3 "$HHELPER" threads "$CHK_PID" "$WORKERS" | cut -d" " -f1)
	echo "$line $chk"
}

now() { date +%s.%N; }

d() { # d A B: B - A, NA when either is
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.2f", b - a }'
}

# measure MODE PHASE: PHASE is idle (sleep) or close/ka (wrk); records rate, CPU by thread,
# checks performed per second.
measure() {
	local mode=$1 phase=$2 out cnt t0 t1 wall checks_s rps p99 errs reqs hdr=()
	local a0 a1 m0 m1 w0 w1 p0 p1 o0 o1 b0 b1 s0 s1 u0 u1 z0 z1 x0 x1 c0 c1
	out="$TMP/r$ROUND-$mode-wrk-$phase.txt"
	cnt="$TMP/r$ROUND-$mode-checks-$phase.txt"
	read -r a0 m0 w0 p0 o0 b0 s0 u0 z0 x0 c0 < <(threads_cpu)
	t0=$(now)
	if [ "$phase" = idle ]; then
		counted "$cnt" sleep "$T_IDLE"
	else
		[ "$phase" = close ] && hdr=(-H "Connection: close")
		counted "$cnt" timeout -k 2 $((T_WRK + 15)) wrk -t 2 -c "$WRK_CONNS" -d "${T_WRK}s" \
			--latency --timeout 2s "${hdr[@]}" "http://127.0.0.1:$LB_PORT/" >"$out" 2>&1 || true
	fi
	t1=$(now)
	read -r a1 m1 w1 p1 o1 b1 s1 u1 z1 x1 c1 < <(threads_cpu)
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	case "$COUNT_BY" in
	perf) checks_s=$(perf_rate "$cnt") ;;
	log) checks_s=$(awk -v n="$(checks_between "$t0" "$t1" "$COUNT_LOG")" -v w="$wall" \
		'BEGIN { printf "%.0f", n / w }') ;;
	*) checks_s=NA ;;
	esac
	record "$mode" "${phase}_wall" "$wall"
	record "$mode" "${phase}_checks_s" "$checks_s"
	record "$mode" "${phase}_cpu_wall" "$(d "$s0" "$s1")"
	record "$mode" "${phase}_cpu_total" "$(d "$a0" "$a1")"
	record "$mode" "${phase}_cpu_main" "$(d "$m0" "$m1")"
	record "$mode" "${phase}_cpu_workers" "$(d "$w0" "$w1")"
	record "$mode" "${phase}_cpu_prober" "$(d "$p0" "$p1")"
	record "$mode" "${phase}_cpu_other" "$(d "$o0" "$o1")"
	record "$mode" "${phase}_cpu_backends" "$(d "$b0" "$b1")"
	record "$mode" "${phase}_machine_busy" "$(d "$u0" "$u1")"
	record "$mode" "${phase}_machine_all" "$(d "$z0" "$z1")"
	record "$mode" "${phase}_machine_steal" "$(d "$x0" "$x1")"
	record "$mode" "${phase}_cpu_checker" "$(d "$c0" "$c1")"
	[ "$phase" = idle ] && return 0
	rps=NA p99=NA errs=NA
	read -r rps p99 errs < <(python3 "$HELPER" wrk "$out" || true) || true
	reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' "$out")
	if [ "$phase" = close ]; then
		record "$mode" close_cps "$rps"
		record "$mode" close_conns "${reqs:-NA}"
	else
		record "$mode" ka_rps "$rps"
		record "$mode" ka_reqs "${reqs:-NA}"
		record "$mode" ka_p99_ms "$p99"
	fi
	record "$mode" "${phase}_errors" "$errs"
	log "round $ROUND $mode: $phase $rps/s, lb CPU $(d "$a0" "$a1") s (prober $(d "$p0" "$p1") s), $checks_s checks/s"
}

run_mode() { # run_mode off|ctl|on: idle + close + keep-alive measurements of one lb
	local mode=$1 type=none prober_of
	[ "$mode" = on ] && type=$CHECK
	LB_LOG="$TMP/r$ROUND-$mode-lb.log"
	COUNT_LOG=$LB_LOG
	if [ "$mode" = ctl ]; then
		CHK_LOG="$TMP/r$ROUND-$mode-checker.log"
		COUNT_LOG=$CHK_LOG
		start_lb CHK_PID "$CHK_LOG" checker "$CHK_PORT" "$CHECK"
	fi
	start_lb LB_PID "$LB_LOG" "$mode" "$LB_PORT" "$type"
	[ "$mode" = off ] || record "$mode" up "$(wait_up "$COUNT_LOG")"
	python3 "$HELPER" probe "$LB_PORT" || { log "lb does not relay HTTP"; exit 1; }
	# Counted in every mode, so that each carries the same perf overhead (none is tiny).
	prober_of=$LB_PID
	[ "$mode" = ctl ] && prober_of=$CHK_PID
	COUNT_TID=$(python3 "$HHELPER" prober_tid "$prober_of" "$WORKERS")
	[ -n "$COUNT_TID" ] || [ "$COUNT_BY" != perf ] || log "warning: no prober thread found in lb $prober_of"
	measure "$mode" idle
	measure "$mode" close
	measure "$mode" ka
	if [ "$LOG_LEVEL" = debug ]; then
		record "$mode" failed "$(count 'check of .* failed' "$COUNT_LOG")"
	else
		record "$mode" failed NA # no line per check at info
	fi
	record "$mode" downs "$(count ' is DOWN' "$COUNT_LOG")"
	# Warnings (rate-limited by lb) that clients were closed for want of a backend.
	record "$mode" no_backend_warnings "$(count 'no usable backend\|no backend could be reached' "$LB_LOG")"
	stop_pid "$LB_PID"
	LB_PID=
	if [ -n "$CHK_PID" ]; then
		stop_pid "$CHK_PID"
		CHK_PID=
	fi
}

# ------------------------------------------------------------------------ main

START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START ($(nproc) CPUs)"
OUTDIR="$ROOT/docs/bench-raw"
mkdir -p "$OUTDIR"
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

start_backends
log "$N_BACKENDS backends on 127.0.0.1:$BACKEND_BASE-$((BACKEND_BASE + N_BACKENDS - 1)), lb on :$LB_PORT"

ROUND=0
ROUNDS_DONE=0
slowest=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	round_start=$(date +%s)
	if [ "$ROUND" -gt 1 ] && [ $((round_start - START + slowest)) -gt "$BUDGET" ]; then
		log "time budget ${BUDGET}s: stopping after $ROUNDS_DONE round(s)"
		break
	fi
	# Rotate the order each round so that no mode always runs first or after another.
	read -r -a modes <<<"$MODES"
	shift_by=$(((ROUND - 1) % ${#modes[@]}))
	order=("${modes[@]:shift_by}" "${modes[@]:0:shift_by}")
	log "round $ROUND/$ROUNDS: ${order[*]}"
	for mode in "${order[@]}"; do run_mode "$mode"; done
	ROUNDS_DONE=$ROUND
	took=$(($(date +%s) - round_start))
	[ "$took" -gt "$slowest" ] && slowest=$took
done

META="$TMP/meta.tsv"
{
	printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'cpu\t%s\n' "$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
	printf 'cpus\t%s\n' "$(nproc)"
	printf 'rounds\t%s\n' "$ROUNDS_DONE"
	printf 'quick\t%s\n' "$QUICK"
	printf 'engine\t%s\n' "$(cat "$TMP"/r1-*-lb.log | sed -n 's/.* info engine: \([a-z_]*\).*/\1/p' | head -1)"
	printf 'workers\t%s\n' "$WORKERS"
	printf 'log_level\t%s\n' "$LOG_LEVEL"
	printf 'count_by\t%s\n' "$COUNT_BY"
	printf 'lb\t%s\n' "$("$LB_BIN" --version 2>/dev/null | head -1) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
	printf 'check\t%s\n' "$CHECK"
	printf 'modes\t%s\n' "$MODES"
	printf 'backends\t%s\n' "$N_BACKENDS"
	printf 'interval\t%s\n' "$INTERVAL"
	printf 'timeout\t%s\n' "$TIMEOUT"
	printf 'expected_cps\t%s\n' "$((N_BACKENDS * 1000 / ${INTERVAL%ms}))"
	printf 'testsrv_procs\t%s\n' "${#BACKEND_PIDS[@]}"
	printf 'per_proc\t%s\n' "$PER_PROC"
	printf 'wrk_conns\t%s\n' "$WRK_CONNS"
	printf 't_wrk\t%s\n' "$T_WRK"
	printf 'load_start\t%s\n' "$LOAD_START"
	printf 'load_end\t%s\n' "$(cut -d" " -f1-3 /proc/loadavg)"
} >"$META"

python3 "$HHELPER" report "$RESULTS" "$META" >"$TMP/report.md"
FENCE=$(printf '\140\140\140') # a markdown code fence
{
	cat "$TMP/report.md"
	printf '\n<details><summary>Raw figures (round, mode, metric, value; then the run)</summary>\n\n```\n'
	cat "$RESULTS"
	printf '%s\n\n%s\n' "$FENCE" "$FENCE"
	cat "$META"
	printf '```\n</details>\n'
} >"$OUTDIR/health_overhead.md"
cat "$TMP/report.md"
log "done in $(($(date +%s) - START))s; report: docs/bench-raw/health_overhead.md"

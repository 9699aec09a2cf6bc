# shellcheck shell=bash
# Process bookkeeping shared by the bench scripts (sourced, not run). The caller defines
# log(), TMP (a temp dir removed at exit unless BENCH_KEEP_TMP=1) and PIDS=() first.

kill_tree() { # kill_tree PID: TERM the process and its children, KILL what is left after 5 s
	local pid=$1 kids
	kids=$(pgrep -P "$pid" 2>/dev/null || true)
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086 # word splitting of the pid list is intended
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill_tree "$pid"
	done
	if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_bg() { # start_bg VAR LOG CMD... : run CMD in the background, pid into VAR
	local var=$1 logf=$2
	shift 2
	"$@" >"$logf" 2>&1 </dev/null &
	PIDS+=("$!")
	printf -v "$var" '%s' "$!"
}

stop_pid() {
	local pid=$1 p keep=()
	kill_tree "$pid"
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

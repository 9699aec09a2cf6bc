# shellcheck shell=bash
# Helpers shared by the fleet tests (sourced, not run). Each test defines fail() itself:
# what to show on failure depends on its topology.

SKIP=77

skip() {
	echo "SKIP: $*"
	exit "$SKIP"
}

now_ms() {
	date +%s%3N
}

log() {
	echo "    $*"
}

pass() {
	echo "PASS [$1] ${*:2}"
}

# wait_until TIMEOUT_MS COMMAND...: polls every 20 ms; 0 when COMMAND succeeded in time.
wait_until() {
	local deadline=$(($(now_ms) + $1))
	shift
	until "$@"; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.02
	done
}

# exited PID: the process is gone or a zombie (our children stay zombies until `wait`)
exited() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

# wait_exit PID TIMEOUT_MS: 0 once the process has exited
wait_exit() {
	wait_until "$2" exited "$1"
}

# stream_figure FILE KEY: one count from fleet-client's stream totals line
stream_figure() {
	grep -o "\b$2=[0-9]*" "$1" | cut -d= -f2
}

# Background processes: call `ip netns exec` itself, not through a function, so that $! is
# the program's pid (ip execs it) and signals reach it; a function runs it in a subshell.

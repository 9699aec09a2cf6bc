#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for SECONDS on a scratch
# copy of its seed corpus (fuzz/corpus/TARGET: the repo is never written), with its dictionary
# fuzz/TARGET.dict if there is one. Prints runs, execs/s and coverage per target; exits 1 if
# any target found a crash, leak or hang, keeping the input that triggered it under
# BUILD/artifacts/TARGET/ and the log under BUILD/logs/.
# usage: fuzz/run.sh [SECONDS] [TARGET...]    (targets: config control parsers; default all)
# env: FUZZ_BUILD (build-fuzz), JOBS (build parallelism, 2), CC (clang)
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config control parsers)
build=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-2}

case "$seconds" in '' | *[!0-9]*)
	echo "usage: $0 [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac

CC=${CC:-clang} cmake -S . -B "$build" -DLB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}" >/dev/null

scratch=$(mktemp -d "${TMPDIR:-/tmp}/lb-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${targets[@]}"; do
	seeds=fuzz/corpus/$t
	if [ ! -x "$build/fuzz_$t" ] || [ ! -d "$seeds" ]; then
		echo "fuzz: unknown target $t" >&2
		exit 2
	fi
	corpus=$scratch/$t
	art=$build/artifacts/$t
	log=$build/logs/$t.log
	mkdir -p "$corpus" "$art"
	cp -R "$seeds/." "$corpus/"
	nseeds=$(find "$corpus" -type f | wc -l)
	echo "fuzz: $t for ${seconds}s from $nseeds seeds"
	dict=()
	[ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
	rc=0
	# -timeout: one input taking 25 s is a hang, reported like a crash.
	"$build/fuzz_$t" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
		${dict[@]+"${dict[@]}"} -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true) # none if a seed crashed
	ncorpus=$(find "$corpus" -type f | wc -l)
	line=$(printf '%-8s runs %-10s execs/s %-7s %-20s corpus %s -> %s' "$t" "${runs:-?}" \
		"${speed:-?}" "${cov:-cov: ?}" "$nseeds" "$ncorpus")
	if [ "$rc" -ne 0 ]; then
		crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
		failed+=("$t")
		line="$line  FAILED (exit $rc)"
		echo "fuzz: $t FAILED: input kept at ${crash:-<none written>}; log $log" >&2
		grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|check failed' "$log" >&2 || true
		echo "  reproduce: $build/fuzz_$t ${crash:-<input>}" >&2
	fi
	summary+=("$line")
done

echo "fuzz summary (${seconds}s each):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}" >&2
	exit 1
fi

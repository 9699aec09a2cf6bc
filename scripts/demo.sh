#!/usr/bin/env bash
# make demo: three tagged test backends and lb in front of them on 127.0.0.1:8080.
set -euo pipefail
build=${1:-build}
dir=$(mktemp -d /tmp/lb-demo.XXXXXX)
pids=()
cleanup() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
	echo
	echo "demo stopped."
}
trap cleanup INT TERM EXIT

"$build/lb-testsrv" --mode http --listen 127.0.0.1:9001 --name web1 \
	--listen 127.0.0.1:9002 --name web2 --listen 127.0.0.1:9003 --name web3 >"$dir/backends.log" 2>&1 &
pids+=($!)
# A copy in the temp dir, so the control socket (default: beside the config) lands there.
cp examples/quickstart.json "$dir/lb.json"
"$build/lb" -c "$dir/lb.json" 2>"$dir/lb.log" &
lb_pid=$!
pids+=("$lb_pid")
# Wait for lb's own start-up line rather than probing the port, which would use up a turn.
for _ in $(seq 50); do
	grep -q " started:" "$dir/lb.log" 2>/dev/null && break
	sleep 0.1
done
tail -n +1 -f "$dir/lb.log" >&2 &
pids+=($!)
cat <<TXT

lb is balancing 127.0.0.1:8080 over three backends (web1..web3 on ports 9001-9003),
round robin. Each backend is a tiny HTTP server that answers with its own name.

Try, in another terminal:
  for i in 1 2 3 4 5 6; do curl -s 127.0.0.1:8080/; done      # web1 web2 web3 web1 web2 web3
  curl -s 127.0.0.1:8080/ 127.0.0.1:8080/                     # one keep-alive connection: same backend

Talk to it with lbctl (its control socket is $dir/lb.sock):
  export LB_SOCKET=$dir/lb.sock
  $build/lbctl status                                         # listeners, totals
  $build/lbctl backends                                       # state and counters per backend
  $build/lbctl drain demo/web2                                # no new connections to web2
  $build/lbctl top                                            # live view, q quits

Status page:  http://127.0.0.1:9180/      (Prometheus metrics: http://127.0.0.1:9180/metrics)

  $build/lb -c examples/quickstart.json --check               # validate a config
  kill -TERM $lb_pid                                         # graceful stop (or Ctrl-C here)

Config: examples/quickstart.json. Press Ctrl-C to stop the demo.
TXT
wait "$lb_pid"

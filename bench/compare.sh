#!/usr/bin/env bash
# bench/compare.sh — `make bench`: lb (both engines), HAProxy and nginx stream in front of the
# same loopback backends (iperf3, nginx http, dnsmasq, redis, PostgreSQL), same worker count, same
# client commands;
# alternates systems, repeats rounds and writes the medians to docs/BENCHMARKS.md, docs/bench.png.
#
# Systems: direct, lb-uring, lb-epoll, haproxy, nginx (default configs), and haproxy-1m /
# nginx-1m: the peers tuned for bulk with 1 MiB buffers (tune.bufsize, proxy_buffer_size),
# run on the bulk workloads (tcp1, tcp4) only.
# Usage: bash bench/compare.sh [--quick] [--rounds N] [--systems "direct lb-uring ..."]
#        [--workloads "idle tcp1 tcp4 ka close udp200 udp500 udp1000 udpgso dns redis pg"]
#        (default: all)
# Env:   LB_BIN (default build/lb), LB_BENCH_ENGINE (engine of the plain "lb" system,
#        default auto), LB_BASE_BIN (the lb of the systems lbbase-uring/lbbase-epoll: an
#        older build to A/B against), BENCH_IDLE_CONNS, BENCH_BUDGET (seconds, default 1200),
#        BENCH_OUT (where BENCHMARKS.md and bench.png go; default docs/, or the raw
#        directory with --quick), BENCH_KEEP_TMP=1 (keep the temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
HELPER="$BENCH/helper.py"

QUICK=0
ROUNDS=
SYSTEMS="direct lb-uring lb-epoll haproxy nginx haproxy-1m nginx-1m"
ALL_WORKLOADS="idle tcp1 tcp4 ka close udp200 udp500 udp1000 udpgso dns redis pg"
WORKLOADS=$ALL_WORKLOADS
WORKERS=$(nproc)
LB_BENCH_ENGINE=${LB_BENCH_ENGINE:-auto}

usage() {
	sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
	--systems) SYSTEMS=${2:?--systems needs a list}; shift ;;
	--workloads) WORKLOADS=${2:?--workloads needs a list}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

case "$ROUNDS" in '' | [1-9] | [1-9][0-9]) ;; *) echo "compare.sh: --rounds wants 1..99" >&2; exit 2 ;; esac
for w in $WORKLOADS; do
	case " $ALL_WORKLOADS " in *" $w "*) ;; *) echo "compare.sh: unknown workload: $w" >&2; exit 2 ;; esac
done

# Durations (seconds) and sizes. Full: 3 rounds fit in ~10 minutes on 2 cores.
if [ "$QUICK" = 1 ]; then
	ROUNDS=${ROUNDS:-1}
	T_TCP=2 T_WRK=2 T_UDP=2 T_DNS=2 T_PG=2 REDIS_REQUESTS=50000
	IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
else
	ROUNDS=${ROUNDS:-3}
	T_TCP=5 T_WRK=5 T_UDP=3 T_DNS=3 T_PG=4 REDIS_REQUESTS=100000
	IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
fi
WRK_CONNS=50
# UDP sessions held for the memory rows (one DNS query from each of that many sockets).
UDP_IDLE_SESSIONS=2000
UDP_LEN=1200
# dnsperf: clients (sockets) and queries in flight, all for one name dnsmasq answers itself.
DNS_CLIENTS=4
DNS_OUTSTANDING=100
DNS_NAME=who.lb.test
# redis-benchmark: GET from 50 connections, one request in flight each (no pipelining).
REDIS_CONNS=50
# pgbench: select-only (-S) from 16 clients on 2 threads, so that the balancer's path is what
# differs; scale 10 (1M rows, cached).
PG_CLIENTS=16
PG_SCALE=10
# The backend body: 100 bytes, as small as a typical health/API reply.
BODY=$(printf 'x%.0s' $(seq 1 100))

LB_BIN=${LB_BIN:-build/lb}
case "$LB_BIN" in /*) ;; *) [ -e "$LB_BIN" ] || LB_BIN="$ROOT/$LB_BIN" ;; esac

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- dependencies

need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }

stream_module() {
	for f in /usr/lib/nginx/modules/ngx_stream_module.so \
		/usr/share/nginx/modules/ngx_stream_module.so; do
		[ -e "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

check_deps() {
	need iperf3 iperf3
	need wrk wrk
	need haproxy haproxy
	need nginx nginx
	need python3 python3
	need ss iproute2
	need gnuplot gnuplot-nox
	need dnsmasq dnsmasq-base
	need dnsperf dnsperf
	need redis-server redis-server
	need redis-benchmark redis-tools
	case " $WORKLOADS " in *" pg "*)
		need pgbench postgresql-client
		pg_bin >/dev/null || need_pkgs+=(postgresql) ;;
	esac
	if command -v nginx >/dev/null 2>&1 && ! stream_module >/dev/null &&
		! nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)'; then
		need_pkgs+=(libnginx-mod-stream)
	elif ! command -v nginx >/dev/null 2>&1; then
		need_pkgs+=(libnginx-mod-stream)
	fi
	[ ${#need_pkgs[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "compare.sh: missing tools; install them with:" >&2
		echo "  sudo apt-get update && sudo apt-get install -y ${need_pkgs[*]}" >&2
		exit 2
	fi
	log "installing ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y "${need_pkgs[@]}" >/dev/null; then
		apt-get update >/dev/null
		apt-get install -y "${need_pkgs[@]}" >/dev/null
	fi
}

# ------------------------------------------------------------ processes, ports

TMP=$(mktemp -d /tmp/lb-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()

# kill_tree, cleanup (trap on EXIT), start_bg, stop_pid
# shellcheck source-path=SCRIPTDIR source=proc.sh
. "$(dirname "$0")/proc.sh"

NEXT_PORT=$((21000 + RANDOM % 4000))
alloc_port() { # alloc_port VAR: a loopback port free for both TCP and UDP, below the ephemeral range
	while [ -n "$(ss -Htuan "( sport = :$NEXT_PORT )")" ]; do
		NEXT_PORT=$((NEXT_PORT + 1))
	done
	printf -v "$1" '%s' "$NEXT_PORT"
	NEXT_PORT=$((NEXT_PORT + 1))
}

wait_listen() { # wait_listen PORT PID [-u]: until TCP (-u: UDP) PORT listens (10 s), or PID dies
	local port=$1 pid=$2 proto=${3:--t}
	for _ in $(seq 100); do
		[ -n "$(ss -H "${proto}ln" "( sport = :$port )")" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

render() { # render TEMPLATE OUT KEY=VALUE...: replace @KEY@ by VALUE
	local tmpl=$1 out=$2 line kv
	shift 2
	: >"$out"
	while IFS= read -r line || [ -n "$line" ]; do
		for kv in "$@"; do
			line=${line//@${kv%%=*}@/${kv#*=}}
		done
		printf '%s\n' "$line" >>"$out"
	done <"$tmpl"
}

# -------------------------------------------------------------------- backends

alloc_port BACKEND_IPERF
alloc_port BACKEND_HTTP
alloc_port BACKEND_DNS
alloc_port BACKEND_GSO # bound by `helper.py gsoblast` itself, for the length of a udpgso run
alloc_port BACKEND_REDIS
alloc_port BACKEND_PG
PG_PID=
REDIS_PID=
IPERF_PID=
BACKEND_NGINX_PID=
DNS_PID=
DNS_QUERIES="$TMP/dns-queries.txt"

start_iperf_server() {
	start_bg IPERF_PID "$TMP/iperf3-server.log" iperf3 -s -B 127.0.0.1 -p "$BACKEND_IPERF"
	wait_listen "$BACKEND_IPERF" "$IPERF_PID" || { log "iperf3 server did not start"; exit 1; }
}

# A client killed mid-test can leave the iperf3 server waiting; a fresh one costs 0.1 s.
restart_iperf_server() {
	stop_pid "$IPERF_PID"
	start_iperf_server
}

start_backends() {
	local d="$TMP/backend-nginx"
	mkdir -p "$d"
	render "$BENCH/nginx-backend.conf.in" "$d/nginx.conf" WORKERS="$WORKERS" DIR="$d" NOFILE="$NOFILE" \
		BACKEND_HTTP_PORT="$BACKEND_HTTP" BODY="$BODY"
	start_bg BACKEND_NGINX_PID "$RAW/logs/backend-nginx.log" \
		nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
	wait_listen "$BACKEND_HTTP" "$BACKEND_NGINX_PID" || {
		log "backend nginx did not start: $(tail -3 "$d/error.log" "$RAW/logs/backend-nginx.log" 2>/dev/null)"
		exit 1
	}
	start_iperf_server
	python3 "$HELPER" probe "$BACKEND_HTTP" || { log "backend nginx does not answer"; exit 1; }
	start_dns_server
	start_bg REDIS_PID "$RAW/logs/backend-redis.log" redis-server --bind 127.0.0.1 \
		--port "$BACKEND_REDIS" --save '' --appendonly no --daemonize no --protected-mode no
	wait_listen "$BACKEND_REDIS" "$REDIS_PID" || { log "redis-server did not start"; exit 1; }
	case " $WORKLOADS " in *" pg "*) start_pg_server ;; esac
}

# PostgreSQL's bin directory (the highest version installed).
pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

as_postgres() { # PostgreSQL refuses to run as root
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A throw-away cluster, trust authentication, no fsync, initialised for pgbench once.
start_pg_server() {
	local bin d="$TMP/pg"
	bin=$(pg_bin) || { log "PostgreSQL is not installed"; exit 1; }
	mkdir -p "$d"
	[ "$(id -u)" = 0 ] && chown postgres "$d"
	as_postgres "$bin/initdb" -D "$d/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
		>"$RAW/logs/backend-initdb.log" 2>&1 || { log "initdb failed (see logs)"; exit 1; }
	start_bg PG_PID "$RAW/logs/backend-postgres.log" as_postgres "$bin/postgres" -D "$d/data" \
		-p "$BACKEND_PG" -h 127.0.0.1 -k "$d" -F -N 200 -c shared_buffers=128MB
	wait_listen "$BACKEND_PG" "$PG_PID" || { log "postgres did not start"; exit 1; }
	pgbench -i -q -s "$PG_SCALE" -h 127.0.0.1 -p "$BACKEND_PG" -U postgres postgres \
		>"$RAW/logs/backend-pgbench-init.log" 2>&1 || { log "pgbench -i failed"; exit 1; }
}

# dnsmasq answers DNS_NAME from its own host record: no upstream, no files, one thread.
start_dns_server() {
	printf '%s A\n' "$DNS_NAME" >"$DNS_QUERIES"
	start_bg DNS_PID "$RAW/logs/backend-dnsmasq.log" \
		dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- \
		--listen-address=127.0.0.1 --bind-interfaces --pid-file= --user="$(id -un)" \
		--port="$BACKEND_DNS" --host-record="$DNS_NAME,10.0.0.1"
	wait_listen "$BACKEND_DNS" "$DNS_PID" -u || {
		log "dnsmasq did not start: $(tail -2 "$RAW/logs/backend-dnsmasq.log" 2>/dev/null)"
		exit 1
	}
	python3 "$HELPER" dnsprobe "$BACKEND_DNS" "$DNS_NAME" || { log "dnsmasq does not answer"; exit 1; }
}

# ------------------------------------------------------------------- balancers

declare -A SYS_IPERF SYS_HTTP SYS_PID SYS_UDP SYS_DNS SYS_DNS_OK SYS_GSO SYS_REDIS SYS_PG NOTE

add_note() { # add_note SYS TEXT: once per run, however many rounds repeat it
	case "; ${NOTE[$1]:-}; " in *"; $2; "*) return 0 ;; esac
	NOTE[$1]="${NOTE[$1]:+${NOTE[$1]}; }$2"
}

declare -A FAILS FIRST_ERR
FAIL_KEYS=()
note_fail() { # note_fail SYS WHAT ERROR: counted per run, summarised in the notes at the end
	local k="$1|$2"
	if [ -z "${FAILS[$k]:-}" ]; then
		FAILS[$k]=0 FIRST_ERR[$k]=$3
		FAIL_KEYS+=("$k")
	fi
	FAILS[$k]=$((FAILS[$k] + 1))
}

assign_ports() {
	local s p
	for s in $SYSTEMS; do
		if [ "$s" = direct ]; then
			SYS_IPERF[$s]=$BACKEND_IPERF SYS_HTTP[$s]=$BACKEND_HTTP SYS_UDP[$s]=1
			SYS_DNS[$s]=$BACKEND_DNS SYS_DNS_OK[$s]=1 SYS_REDIS[$s]=$BACKEND_REDIS
			SYS_PG[$s]=$BACKEND_PG SYS_GSO[$s]=$BACKEND_GSO
			continue
		fi
		alloc_port p
		SYS_IPERF[$s]=$p
		alloc_port p
		SYS_HTTP[$s]=$p
		alloc_port p
		SYS_DNS[$s]=$p
		alloc_port p
		SYS_GSO[$s]=$p
		alloc_port p
		SYS_REDIS[$s]=$p
		alloc_port p
		SYS_PG[$s]=$p
		SYS_UDP[$s]=0 SYS_DNS_OK[$s]=0
	done
}

lb_engine() {
	case "$1" in
	lb-uring | lbbase-uring) echo io_uring ;;
	lb-epoll | lbbase-epoll) echo epoll ;;
	*) echo "$LB_BENCH_ENGINE" ;;
	esac
}

start_lb() {
	local s=$1 d="$TMP/$1" engine udp pid err LB_BIN=$LB_BIN
	engine=$(lb_engine "$s")
	case "$s" in lbbase-*) LB_BIN=${LB_BASE_BIN:-} ;; esac
	if [ ! -x "$LB_BIN" ]; then
		add_note "$s" "lb binary not found at '$LB_BIN' (build it first; lbbase-*: set LB_BASE_BIN)"
		return 1
	fi
	mkdir -p "$d"
	# The UDP listeners (iperf3 -u, DNS) are injected so that an lb without UDP still runs TCP.
	udp=", { \"name\": \"iperf-udp\", \"protocol\": \"udp\", \"listen\": \"127.0.0.1:${SYS_IPERF[$s]}\", \"pool\": \"iperf\" }"
	udp+=", { \"name\": \"dns\", \"protocol\": \"udp\", \"listen\": \"127.0.0.1:${SYS_DNS[$s]}\", \"pool\": \"dns\" }"
	udp+=", { \"name\": \"gso\", \"protocol\": \"udp\", \"listen\": \"127.0.0.1:${SYS_GSO[$s]}\", \"pool\": \"gso\" }"
	render "$BENCH/lb.json.in" "$d/lb.json" ENGINE="$engine" WORKERS="$WORKERS" DIR="$d" \
		IPERF_PORT="${SYS_IPERF[$s]}" HTTP_PORT="${SYS_HTTP[$s]}" \
		BACKEND_IPERF_PORT="$BACKEND_IPERF" BACKEND_HTTP_PORT="$BACKEND_HTTP" \
		BACKEND_DNS_PORT="$BACKEND_DNS" BACKEND_GSO_PORT="$BACKEND_GSO" REDIS_PORT="${SYS_REDIS[$s]}" PG_PORT="${SYS_PG[$s]}" BACKEND_PG_PORT="$BACKEND_PG" \
		BACKEND_REDIS_PORT="$BACKEND_REDIS" UDP_LISTENER="$udp"
	SYS_UDP[$s]=1 SYS_DNS_OK[$s]=1
	if ! "$LB_BIN" -c "$d/lb.json" --check >"$d/check.log" 2>&1; then
		SYS_UDP[$s]=0 SYS_DNS_OK[$s]=0
		add_note "$s" "udp listeners rejected by lb --check: $(head -1 "$d/check.log")"
		render "$BENCH/lb.json.in" "$d/lb.json" ENGINE="$engine" WORKERS="$WORKERS" DIR="$d" \
			IPERF_PORT="${SYS_IPERF[$s]}" HTTP_PORT="${SYS_HTTP[$s]}" \
			BACKEND_IPERF_PORT="$BACKEND_IPERF" BACKEND_HTTP_PORT="$BACKEND_HTTP" \
			BACKEND_DNS_PORT="$BACKEND_DNS" BACKEND_GSO_PORT="$BACKEND_GSO" REDIS_PORT="${SYS_REDIS[$s]}" PG_PORT="${SYS_PG[$s]}" BACKEND_PG_PORT="$BACKEND_PG" \
			BACKEND_REDIS_PORT="$BACKEND_REDIS" UDP_LISTENER=""
		if ! "$LB_BIN" -c "$d/lb.json" --check >"$d/check.log" 2>&1; then
			add_note "$s" "config rejected by lb --check: $(head -3 "$d/check.log" | tr '\n' ' ')"
			return 1
		fi
	fi
	start_bg pid "$RAW/logs/$s.log" "$LB_BIN" -c "$d/lb.json"
	SYS_PID[$s]=$pid
	if ! wait_listen "${SYS_HTTP[$s]}" "$pid" || ! wait_listen "${SYS_IPERF[$s]}" "$pid"; then
		err=$(tail -2 "$RAW/logs/$s.log" | tr '\n' ' ')
		add_note "$s" "lb ($engine) did not start listening: $err"
		return 1
	fi
	if [ "${SYS_DNS_OK[$s]}" = 1 ] && ! wait_listen "${SYS_DNS[$s]}" "$pid" -u; then
		add_note "$s" "lb ($engine) did not open its DNS (udp) listener"
		SYS_DNS_OK[$s]=0
	fi
	return 0
}

start_haproxy() {
	local s=$1 d="$TMP/$1" pid tune=""
	mkdir -p "$d"
	[ "$s" = haproxy-1m ] && tune="tune.bufsize 1048576"
	render "$BENCH/haproxy.cfg.in" "$d/haproxy.cfg" WORKERS="$WORKERS" DIR="$d" MAXCONN="$HAPROXY_MAXCONN" \
		TUNE="$tune" \
		IPERF_PORT="${SYS_IPERF[$s]}" HTTP_PORT="${SYS_HTTP[$s]}" \
		BACKEND_IPERF_PORT="$BACKEND_IPERF" BACKEND_HTTP_PORT="$BACKEND_HTTP" \
		REDIS_PORT="${SYS_REDIS[$s]}" PG_PORT="${SYS_PG[$s]}" BACKEND_PG_PORT="$BACKEND_PG" BACKEND_REDIS_PORT="$BACKEND_REDIS"
	start_bg pid "$RAW/logs/$s.log" haproxy -db -f "$d/haproxy.cfg"
	SYS_PID[$s]=$pid
	if ! wait_listen "${SYS_HTTP[$s]}" "$pid" || ! wait_listen "${SYS_IPERF[$s]}" "$pid"; then
		add_note "$s" "did not start: $(grep -m1 ALERT "$RAW/logs/$s.log" || tail -1 "$RAW/logs/$s.log")"
		return 1
	fi
	add_note "$s" "HAProxy has no UDP proxying"
	[ -z "$tune" ] || add_note "$s" "tuned for bulk ($tune): bulk rows only"
}

start_nginx() {
	local s=$1 d="$TMP/$1" pid load="" tune=""
	mkdir -p "$d"
	[ "$s" = nginx-1m ] && tune="proxy_buffer_size 1m;"
	if stream_module >/dev/null; then load="load_module $(stream_module);"; fi
	render "$BENCH/nginx-stream.conf.in" "$d/nginx.conf" WORKERS="$WORKERS" DIR="$d" NOFILE="$NOFILE" \
		TUNE="$tune" \
		LOAD_STREAM="$load" IPERF_PORT="${SYS_IPERF[$s]}" HTTP_PORT="${SYS_HTTP[$s]}" \
		BACKEND_IPERF_PORT="$BACKEND_IPERF" BACKEND_HTTP_PORT="$BACKEND_HTTP" \
		DNS_PORT="${SYS_DNS[$s]}" BACKEND_DNS_PORT="$BACKEND_DNS" \
		GSO_PORT="${SYS_GSO[$s]}" BACKEND_GSO_PORT="$BACKEND_GSO" \
		REDIS_PORT="${SYS_REDIS[$s]}" PG_PORT="${SYS_PG[$s]}" BACKEND_PG_PORT="$BACKEND_PG" BACKEND_REDIS_PORT="$BACKEND_REDIS"
	start_bg pid "$RAW/logs/$s.log" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
	SYS_PID[$s]=$pid
	SYS_UDP[$s]=1 SYS_DNS_OK[$s]=1
	if ! wait_listen "${SYS_HTTP[$s]}" "$pid" || ! wait_listen "${SYS_IPERF[$s]}" "$pid" ||
		! wait_listen "${SYS_DNS[$s]}" "$pid" -u; then
		add_note "$s" "did not start: $(tail -1 "$d/error.log" 2>/dev/null)"
		return 1
	fi
	[ -z "$tune" ] || add_note "$s" "tuned for bulk ($tune): bulk rows only"
}

declare -A UP
start_system() { # marks UP[s]=1 when it runs and relays an HTTP request
	local s=$1 ok=0
	UP[$s]=0
	[ "$s" = direct ] && { UP[$s]=1; return 0; }
	case "$s" in
	lb | lb-* | lbbase-*) start_lb "$s" && ok=1 ;;
	haproxy | haproxy-1m) start_haproxy "$s" && ok=1 ;;
	nginx | nginx-1m) start_nginx "$s" && ok=1 ;;
	*) log "unknown system $s"; exit 2 ;;
	esac
	if [ "$ok" = 1 ] && ! python3 "$HELPER" probe "${SYS_HTTP[$s]}" 2>>"$RAW/logs/$s.log"; then
		add_note "$s" "does not relay TCP (HTTP probe failed)"
		ok=0
	fi
	if [ "$ok" = 1 ] && [ "${SYS_DNS_OK[$s]}" = 1 ] &&
		! python3 "$HELPER" dnsprobe "${SYS_DNS[$s]}" "$DNS_NAME" 2>>"$RAW/logs/$s.log"; then
		add_note "$s" "does not relay DNS (dnsprobe failed); its DNS rows are n/a"
		SYS_DNS_OK[$s]=0
	fi
	if [ "$ok" = 1 ]; then
		UP[$s]=1
	else
		log "$s: n/a — ${NOTE[$s]:-failed to start, see $RAW/logs/$s.log}"
		[ -n "${SYS_PID[$s]:-}" ] && stop_pid "${SYS_PID[$s]}"
		SYS_PID[$s]=
	fi
}

stop_system() {
	local s=$1
	[ -n "${SYS_PID[$s]:-}" ] && stop_pid "${SYS_PID[$s]}"
	SYS_PID[$s]=
	UP[$s]=0
}

alive() { # alive SYS: still running (direct always is)
	local s=$1
	[ "${UP[$s]}" = 1 ] || return 1
	[ "$s" = direct ] && return 0
	if ! kill -0 "${SYS_PID[$s]}" 2>/dev/null; then
		add_note "$s" "exited during round $ROUND (see bench-raw logs)"
		log "$s exited; its remaining rows in round $ROUND are n/a"
		UP[$s]=0
		return 1
	fi
}

# ------------------------------------------------------------------- workloads

record() { # record SYS METRIC VALUE
	printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RAW/results.tsv"
}

cpu_now() {
	if [ "$1" = direct ]; then echo NA; else python3 "$HELPER" cpu "${SYS_PID[$1]}"; fi
}

declare -A CPU_S BYTES
run_tcp() { # run_tcp SYS STREAMS
	local s=$1 n=$2 out c0 c1 gbps bytes
	out="$RAW/r$ROUND-$s-tcp$n.json"
	c0=$(cpu_now "$s")
	timeout -k 2 $((T_TCP + 15)) iperf3 -c 127.0.0.1 -p "${SYS_IPERF[$s]}" -P "$n" -t "$T_TCP" \
		--connect-timeout 3000 -J >"$out" 2>&1 || true
	c1=$(cpu_now "$s")
	gbps=NA bytes=NA
	read -r gbps bytes < <(python3 "$HELPER" iperf "$out" tcp 2>"$TMP/iperf.err" || true) || true
	record "$s" "tcp$n" "$gbps"
	if [ "$gbps" = NA ]; then
		note_fail "$s" "iperf3 -P $n" "$(head -1 "$TMP/iperf.err")"
		restart_iperf_server
	fi
	if [ "$c0" != NA ] && [ "$bytes" != NA ]; then
		CPU_S[$s]=$(awk -v a="${CPU_S[$s]:-0}" -v b="$c0" -v c="$c1" 'BEGIN { print a + c - b }')
		BYTES[$s]=$(awk -v a="${BYTES[$s]:-0}" -v b="$bytes" 'BEGIN { print a + b }')
	fi
}

run_udp() { # run_udp SYS RATE_MBIT
	local s=$1 rate=$2 out loss pkts
	out="$RAW/r$ROUND-$s-udp$rate.json"
	if [ "${SYS_UDP[$s]}" != 1 ]; then record "$s" "udp$rate" NA; return; fi
	timeout -k 2 $((T_UDP + 15)) iperf3 -c 127.0.0.1 -p "${SYS_IPERF[$s]}" -u -b "${rate}M" \
		-l "$UDP_LEN" -t "$T_UDP" --connect-timeout 3000 -J >"$out" 2>&1 || true
	loss=NA pkts=NA
	read -r loss pkts < <(python3 "$HELPER" iperf "$out" udp 2>"$TMP/iperf.err" || true) || true
	record "$s" "udp$rate" "$loss"
	if [ "$loss" = NA ]; then
		note_fail "$s" "iperf3 -u" "$(head -1 "$TMP/iperf.err")"
		restart_iperf_server
		# lb's UDP may not exist yet: do not spend the remaining UDP rows of this round on it.
		case "$s" in lb | lb-* | lbbase-*) SYS_UDP[$s]=0 ;; esac
	fi
	: "$pkts"
}

run_udpgso() { # run_udpgso SYS: UDP from a GSO sender (runs of 40 datagrams per send, as QUIC)
	local s=$1 out c0 c1 sent got loss
	out="$RAW/r$ROUND-$s-udpgso.txt"
	if [ "${SYS_UDP[$s]}" != 1 ]; then
		record "$s" udpgso_loss NA; record "$s" udpgso_cpu_us NA
		return
	fi
	c0=$(cpu_now "$s")
	timeout -k 2 $((T_UDP + 15)) python3 "$HELPER" gsoblast "${SYS_GSO[$s]}" "$BACKEND_GSO" \
		"$T_UDP" 1000 >"$out" 2>&1 || true
	c1=$(cpu_now "$s")
	sent=NA got=NA loss=NA
	read -r sent got loss <"$out" || true
	case "$loss" in '' | *[!0-9.]*) loss=NA ;; esac
	record "$s" udpgso_loss "$loss"
	if [ "$loss" = NA ]; then
		note_fail "$s" "gsoblast" "$(head -1 "$out")"
		record "$s" udpgso_cpu_us NA
	elif [ "$c0" != NA ] && [ "$got" -gt 0 ]; then
		record "$s" udpgso_cpu_us "$(awk -v a="$c0" -v b="$c1" -v n="$got" 'BEGIN { printf "%.3f", (b - a) / n * 1e6 }')"
	fi
	: "$sent"
}

run_dns() { # run_dns SYS: dnsperf against the system's DNS port
	local s=$1 out qps lat lost
	out="$RAW/r$ROUND-$s-dns.txt"
	if [ "${SYS_DNS_OK[$s]}" != 1 ]; then
		record "$s" dns_qps NA; record "$s" dns_lat_ms NA
		return
	fi
	timeout -k 2 $((T_DNS + 15)) dnsperf -s 127.0.0.1 -p "${SYS_DNS[$s]}" -d "$DNS_QUERIES" \
		-l "$T_DNS" -c "$DNS_CLIENTS" -q "$DNS_OUTSTANDING" >"$out" 2>&1 || true
	qps=NA lat=NA lost=NA
	read -r qps lat lost < <(python3 "$HELPER" dnsperf "$out" 2>"$TMP/dnsperf.err" || true) || true
	record "$s" dns_qps "$qps"
	record "$s" dns_lat_ms "$lat"
	record "$s" dns_lost "$lost"
	[ "$qps" = NA ] && note_fail "$s" "dnsperf" "$(head -1 "$TMP/dnsperf.err")"
	return 0
}

run_redis() { # run_redis SYS: redis-benchmark GET through the system, no pipelining
	local s=$1 out line
	out="$RAW/r$ROUND-$s-redis.csv"
	timeout -k 2 60 redis-benchmark -h 127.0.0.1 -p "${SYS_REDIS[$s]}" -c "$REDIS_CONNS" \
		-n "$REDIS_REQUESTS" -t get --csv >"$out" 2>&1 || true
	# "GET","rps","avg","min","p50","p95","p99","max"
	line=$(grep '^"GET"' "$out" | tail -1 | tr -d '"')
	if [ -z "$line" ]; then
		record "$s" redis_rps NA; record "$s" redis_p50_ms NA; record "$s" redis_p99_ms NA
		note_fail "$s" "redis-benchmark" "$(head -1 "$out")"
		return 0
	fi
	IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
	record "$s" redis_rps "$rps"
	record "$s" redis_p50_ms "$p50"
	record "$s" redis_p99_ms "$p99"
}

run_pg() { # run_pg SYS: pgbench select-only through the system
	local s=$1 out tps lat fail c0 c1 us=NA
	out="$RAW/r$ROUND-$s-pgbench.txt"
	c0=$(cpu_now "$s")
	timeout -k 2 $((T_PG + 30)) pgbench -h 127.0.0.1 -p "${SYS_PG[$s]}" -U postgres \
		-c "$PG_CLIENTS" -j 2 -S -T "$T_PG" postgres >"$out" 2>&1 || true
	c1=$(cpu_now "$s")
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
	fail=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	if [ -z "$tps" ] || [ -z "$lat" ] || [ "${fail:-0}" != 0 ]; then
		record "$s" pg_tps NA; record "$s" pg_lat_ms NA; record "$s" pg_cpu_us NA
		note_fail "$s" "pgbench" "$(grep -m1 -i 'error\|fatal' "$out" || tail -1 "$out")"
		return 0
	fi
	# The balancer's CPU (all its processes) per transaction, over the run.
	if [ "$c0" != NA ]; then
		us=$(awk -v a="$c0" -v b="$c1" -v r="$tps" -v t="$T_PG" \
			'BEGIN { if (r > 0) printf "%.1f", (b - a) * 1e6 / (r * t); else print "NA" }')
	fi
	record "$s" pg_tps "$tps"
	record "$s" pg_lat_ms "$lat"
	record "$s" pg_cpu_us "$us"
}

run_wrk() { # run_wrk SYS keepalive|close
	local s=$1 mode=$2 out rps p99 errs c0 c1 us hdr=() pids=() split0 split1 user_us sys_us
	local softirq_us
	out="$RAW/r$ROUND-$s-wrk-$mode.txt"
	[ "$mode" = close ] && hdr=(-H "Connection: close")
	[ "$s" != direct ] && pids=("${SYS_PID[$s]}")
	c0=$(cpu_now "$s")
	split0=$(python3 "$HELPER" cpusplit "${pids[@]}")
	timeout -k 2 $((T_WRK + 15)) wrk -t 2 -c "$WRK_CONNS" -d "${T_WRK}s" --latency --timeout 2s \
		"${hdr[@]}" "http://127.0.0.1:${SYS_HTTP[$s]}/" >"$out" 2>&1 || true
	split1=$(python3 "$HELPER" cpusplit "${pids[@]}")
	c1=$(cpu_now "$s")
	rps=NA p99=NA errs=NA
	read -r rps p99 errs < <(python3 "$HELPER" wrk "$out" || true) || true
	# The balancer's CPU (all its processes) per request, over the wrk run.
	us=NA
	if [ "$c0" != NA ] && [ "$rps" != NA ]; then
		us=$(awk -v a="$c0" -v b="$c1" -v r="$rps" -v t="$T_WRK" \
			'BEGIN { if (r > 0) printf "%.1f", (b - a) * 1e6 / (r * t); else print "NA" }')
	fi
	if [ "$mode" = close ]; then
		record "$s" close_cps "$rps"
		record "$s" close_cpu_us "$us"
	else
		record "$s" ka_rps "$rps"
		record "$s" ka_p99_ms "$p99"
		record "$s" ka_cpu_us "$us"
		# Where it goes: the balancer's user and system time, and the whole machine's
		# softirq time (wrk's and the backend's too: compare with the direct column).
		read -r user_us sys_us softirq_us < <(awk -v a="$split0" -v b="$split1" -v r="$rps" \
			-v t="$T_WRK" 'BEGIN { split(a, x, " "); split(b, y, " ")
				for (i = 1; i <= 3; i++)
					v[i] = (x[i] == "NA" || r == "NA" || r <= 0) ? "NA" :
						sprintf("%.1f", (y[i] - x[i]) * 1e6 / (r * t))
				print v[1], v[2], v[3] }')
		record "$s" ka_user_us "$user_us"
		record "$s" ka_sys_us "$sys_us"
		record "$s" ka_softirq_us "$softirq_us"
	fi
	record "$s" "wrk_${mode}_errors" "$errs"
}

run_idle() {
	local s=$1 per held kper port=${SYS_HTTP[$s]} pids=()
	# direct: the client straight to the backend, for the kernel memory the balancer adds.
	if [ "$s" = direct ]; then port=$BACKEND_HTTP; else pids=("${SYS_PID[$s]}"); fi
	per=NA held=0 kper=NA
	read -r per held kper < <(timeout -k 2 60 python3 "$HELPER" idle "$port" "$BACKEND_HTTP" \
		"$IDLE_CONNS" "${pids[@]}" 2>>"$RAW/logs/$s.log" || true) || true
	record "$s" idle_held "$held"
	if [ "$per" = NA ] || [ "$s" = direct ]; then
		record "$s" mem_per_conn_kb NA
	else
		record "$s" mem_per_conn_kb "$(awk -v b="$per" 'BEGIN { printf "%.2f", b / 1024 }')"
	fi
	if [ "${kper:-NA}" = NA ]; then
		record "$s" kmem_per_conn_kb NA
	else
		record "$s" kmem_per_conn_kb "$(awk -v b="$kper" 'BEGIN { printf "%.2f", b / 1024 }')"
	fi
	# UDP sessions (lb only: nginx's DNS listener ends a session at its reply).
	per=NA kper=NA
	case "$s" in lb | lb-* | lbbase-*)
		if [ "${SYS_DNS_OK[$s]}" = 1 ]; then
			read -r per _ kper < <(timeout -k 2 60 python3 "$HELPER" udpidle "${SYS_DNS[$s]}" \
				"$DNS_NAME" "$UDP_IDLE_SESSIONS" "${pids[@]}" 2>>"$RAW/logs/$s.log" || true) || true
		fi ;;
	esac
	record "$s" mem_per_udp_session_b "${per:-NA}"
	record "$s" kmem_per_udp_session_b "${kper:-NA}"
	sleep 0.5 # let the balancer and backend reap the closed connections
}

# The peers tuned with 1 MiB buffers are there for the bulk rows only.
runs() { # runs SYS WORKLOAD
	case "$1" in *-1m) case "$2" in tcp1 | tcp4) return 0 ;; *) return 1 ;; esac ;; esac
	return 0
}

run_workload() { # run_workload NAME SYS
	local w=$1 s=$2
	if ! runs "$s" "$w" || ! alive "$s"; then
		case "$w" in
		idle) record "$s" mem_per_conn_kb NA; record "$s" kmem_per_conn_kb NA
			record "$s" mem_per_udp_session_b NA; record "$s" kmem_per_udp_session_b NA ;;
		tcp1 | tcp4) record "$s" "$w" NA ;;
		ka) record "$s" ka_rps NA; record "$s" ka_p99_ms NA ;;
		close) record "$s" close_cps NA ;;
		udp200 | udp500 | udp1000) record "$s" "$w" NA ;;
		udpgso) record "$s" udpgso_loss NA; record "$s" udpgso_cpu_us NA ;;
		dns) record "$s" dns_qps NA; record "$s" dns_lat_ms NA ;;
		redis) record "$s" redis_rps NA; record "$s" redis_p50_ms NA; record "$s" redis_p99_ms NA ;;
		pg) record "$s" pg_tps NA; record "$s" pg_lat_ms NA; record "$s" pg_cpu_us NA ;;
		esac
		return
	fi
	case "$w" in
	idle) run_idle "$s" ;;
	tcp1) run_tcp "$s" 1 ;;
	tcp4) run_tcp "$s" 4 ;;
	ka) run_wrk "$s" keepalive ;;
	close) run_wrk "$s" close ;;
	udp200) run_udp "$s" 200 ;;
	udp500) run_udp "$s" 500 ;;
	udp1000) run_udp "$s" 1000 ;;
	udpgso) run_udpgso "$s" ;;
	dns) run_dns "$s" ;;
	redis) run_redis "$s" ;;
	pg) run_pg "$s" ;;
	esac
}

# ------------------------------------------------------------------------ main

START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" -v n="$WORKERS" 'BEGIN { exit !(l > n / 2) }'; then
	log "warning: load average $LOAD_START on $WORKERS CPUs; other work will add noise"
fi
check_deps

# Enough descriptors for IDLE_CONNS through a balancer (two sockets each) plus the backend's.
# Raising the hard limit needs CAP_SYS_RESOURCE, which containers often lack.
if [ "$(id -u)" = 0 ]; then ulimit -Hn 200000 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=200000
max_idle=$(((NOFILE - 1000) / 2))
if [ "$IDLE_CONNS" -gt "$max_idle" ]; then
	log "RLIMIT_NOFILE is $NOFILE (hard limit): idle-connection test uses $max_idle, not $IDLE_CONNS"
	IDLE_CONNS=$max_idle
fi
# HAProxy refuses to start when 2 * maxconn descriptors exceed the limit.
HAPROXY_MAXCONN=$(((NOFILE - 500) / 2))

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$ROOT/docs/bench-raw/$STAMP"
mkdir -p "$RAW/logs"
: >"$RAW/results.tsv"
log "raw results in ${RAW#"$ROOT"/}"

start_backends
assign_ports

# `make bench` must end within 20 minutes: start a round only if the slowest one so far fits.
BUDGET=${BENCH_BUDGET:-1200}
ROUNDS_DONE=0
slowest=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	round_start=$(date +%s)
	if [ "$ROUND" -gt 1 ] && [ $((round_start - START + slowest)) -gt "$BUDGET" ]; then
		log "time budget ${BUDGET}s: stopping after $ROUNDS_DONE round(s)"
		add_note all "only $ROUNDS_DONE of $ROUNDS rounds fit in the ${BUDGET}s budget"
		break
	fi
	# Rotate the order each round so no system always runs first (or right after another).
	read -r -a sys_list <<<"$SYSTEMS"
	shift_by=$(((ROUND - 1) % ${#sys_list[@]}))
	order=("${sys_list[@]:shift_by}" "${sys_list[@]:0:shift_by}")
	log "round $ROUND/$ROUNDS: ${order[*]}"
	for s in "${order[@]}"; do
		start_system "$s"
		CPU_S[$s]=0 BYTES[$s]=0
	done
	for w in $WORKLOADS; do
		log "round $ROUND: $w"
		for s in "${order[@]}"; do
			run_workload "$w" "$s"
		done
		if [ "$w" = tcp4 ]; then
			for s in "${order[@]}"; do
				record "$s" cpu_s_per_gb "$(awk -v c="${CPU_S[$s]}" -v b="${BYTES[$s]}" \
					'BEGIN { if (b > 0 && c != "") printf "%.3f", c / (b / 1e9); else print "NA" }')"
			done
		fi
	done
	for s in "${order[@]}"; do stop_system "$s"; done
	ROUNDS_DONE=$ROUND
	took=$(($(date +%s) - round_start))
	[ "$took" -gt "$slowest" ] && slowest=$took
done

# Notes (why a cell is n/a) and the facts the report prints.
for k in "${FAIL_KEYS[@]}"; do
	add_note "${k%%|*}" "${k#*|} failed in ${FAILS[$k]} run(s) over $ROUNDS_DONE round(s) (first error: ${FIRST_ERR[$k]})"
done
: >"$RAW/notes.tsv"
for s in all $SYSTEMS; do
	[ -n "${NOTE[$s]:-}" ] && printf '%s\t%s\n' "$s" "${NOTE[$s]}" >>"$RAW/notes.tsv"
done
ELAPSED=$(($(date +%s) - START))
{
	printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'cpu\t%s\n' "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
	printf 'cpus\t%s\n' "$(nproc)"
	printf 'rounds\t%s\n' "$ROUNDS_DONE"
	printf 'quick\t%s\n' "$QUICK"
	printf 'elapsed\t%s\n' "$ELAPSED"
	printf 'workers\t%s\n' "$WORKERS"
	printf 't_tcp\t%s\nt_wrk\t%s\nt_udp\t%s\nt_dns\t%s\n' "$T_TCP" "$T_WRK" "$T_UDP" "$T_DNS"
	printf 'dns_clients\t%s\ndns_outstanding\t%s\ndns_name\t%s\n' \
		"$DNS_CLIENTS" "$DNS_OUTSTANDING" "$DNS_NAME"
	printf 'redis_conns\t%s\nredis_requests\t%s\n' "$REDIS_CONNS" "$REDIS_REQUESTS"
	printf 'pg_clients\t%s\npg_scale\t%s\nt_pg\t%s\n' "$PG_CLIENTS" "$PG_SCALE" "$T_PG"
	printf 'postgres\t%s\n' "$( (pgbench --version 2>/dev/null || true) | awk '{print $3}')"
	printf 'nofile\t%s\n' "$NOFILE"
	printf 'idle_conns\t%s\nwrk_conns\t%s\nudp_len\t%s\nudp_idle_sessions\t%s\n' "$IDLE_CONNS" "$WRK_CONNS" "$UDP_LEN" "$UDP_IDLE_SESSIONS"
	printf 'systems\t%s\n' "$SYSTEMS"
	printf 'haproxy\t%s\n' "$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')"
	printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed 's|.*/||')"
	printf 'iperf3\t%s\n' "$(iperf3 --version | head -1 | awk '{print $2}')"
	printf 'wrk\t%s\n' "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
	printf 'dnsmasq\t%s\n' "$(dnsmasq --version 2>/dev/null | head -1 | awk '{print $3}')"
	printf 'redis\t%s\n' "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
	printf 'dnsperf\t%s\n' "$(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -1)"
	printf 'lb\t%s\n' "$([ -x "$LB_BIN" ] && "$LB_BIN" --version 2>/dev/null | head -1 | sed 's/^lb //' || echo 'not built')"
	printf 'load\t%s\n' "$LOAD_START → $(cut -d" " -f1-3 /proc/loadavg)"
} >"$RAW/meta.tsv"

# Quick runs are for development: they do not overwrite the committed report.
if [ "$QUICK" = 1 ]; then OUT=${BENCH_OUT:-$RAW}; else OUT=${BENCH_OUT:-$ROOT/docs}; fi
mkdir -p "$OUT"
python3 "$BENCH/report.py" "$RAW" "$OUT/BENCHMARKS.md" "$OUT/bench.png"
log "done in ${ELAPSED}s; report: ${OUT#"$ROOT"/}/BENCHMARKS.md"

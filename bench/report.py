#!/usr/bin/env python3
"""Turns one bench/compare.sh run (results.tsv, notes.tsv, meta.tsv in RAWDIR) into
BENCHMARKS.md (medians, ratios, method, commands) and a gnuplot chart.
Usage: report.py RAWDIR OUT.md OUT.png"""

import os
import shutil
import statistics
import subprocess
import sys

HIGHER, LOWER = "higher", "lower"
# (metric key, row label, better direction, number format)
ROWS = [
    ("tcp1", "iperf3 1 stream, Gbit/s", HIGHER, "f2"),
    ("tcp4", "iperf3 4 streams, Gbit/s", HIGHER, "f2"),
    ("ka_rps", "wrk keep-alive 50 conns, req/s", HIGHER, "k"),
    ("ka_p99_ms", "wrk keep-alive p99 latency, ms", LOWER, "f2"),
    ("close_cps", "wrk `Connection: close`, conn/s", HIGHER, "k"),
    ("udp200", "UDP 200 Mbit/s (iperf3 -u), loss %", LOWER, "f2"),
    ("udp500", "UDP 500 Mbit/s (iperf3 -u), loss %", LOWER, "f2"),
    ("udp1000", "UDP 1 Gbit/s (iperf3 -u), loss %", LOWER, "f2"),
    ("udpgso_loss", "UDP 1 Gbit/s from a GSO sender (40 datagrams a send), loss %", LOWER, "f2"),
    ("udpgso_cpu_us", "balancer CPU per datagram from a GSO sender, µs", LOWER, "f2"),
    ("dns_qps", "DNS queries/s (dnsperf → dnsmasq)", HIGHER, "k"),
    ("dns_lat_ms", "DNS average latency, ms", LOWER, "f3"),
    ("redis_rps", "redis-benchmark GET, 50 conns, req/s", HIGHER, "k"),
    ("redis_p50_ms", "redis-benchmark GET p50 latency, ms", LOWER, "f3"),
    ("redis_p99_ms", "redis-benchmark GET p99 latency, ms", LOWER, "f3"),
    ("pg_tps", "pgbench -S, 16 clients, transactions/s", HIGHER, "k"),
    ("pg_lat_ms", "pgbench -S average latency, ms", LOWER, "f3"),
    ("mem_per_conn_kb", "user-space memory per idle connection, KB", LOWER, "f1"),
    ("kmem_per_conn_kb", "kernel memory per idle connection, whole machine, KB", LOWER, "f1"),
    ("mem_per_udp_session_b", "user-space memory per UDP session, bytes", LOWER, "f0"),
    ("kmem_per_udp_session_b", "kernel memory per UDP session, bytes", LOWER, "f0"),
    ("cpu_s_per_gb", "balancer CPU seconds per GB relayed", LOWER, "f2"),
    ("ka_cpu_us", "balancer CPU per keep-alive request, µs", LOWER, "f1"),
    ("ka_user_us", "balancer user CPU per keep-alive request, µs", LOWER, "f1"),
    ("ka_sys_us", "balancer system CPU per keep-alive request (with softirq), µs", LOWER, "f1"),
    ("ka_softirq_us", "softirq CPU per keep-alive request, whole machine, µs", LOWER, "f1"),
    ("close_cpu_us", "balancer CPU per new connection, µs", LOWER, "f1"),
    ("pg_cpu_us", "balancer CPU per pgbench transaction, µs", LOWER, "f1"),
]
# Chart panels: throughput as % of direct; costs relative to the best peer.
# Chart labels: short enough that five fit side by side.
THROUGHPUT = [("tcp1", "TCP x1"), ("tcp4", "TCP x4"),
              ("ka_rps", "keep-alive"), ("close_cps", "new conns"),
              ("dns_qps", "DNS")]
COSTS = [("ka_p99_ms", "p99 latency"), ("mem_per_conn_kb", "memory/idle conn"),
         ("cpu_s_per_gb", "CPU s/GB"), ("ka_cpu_us", "CPU/request"),
         ("close_cpu_us", "CPU/conn")]


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def fmt(v, style):
    if v is None:
        return "n/a"
    if style == "k":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    return f"{v:.{int(style[1])}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def best(values, direction):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return max(vals) if direction == HIGHER else min(vals)


def main():
    raw, out_md, out_png = sys.argv[1:4]
    meta = dict((r[0], r[1]) for r in read_tsv(os.path.join(raw, "meta.tsv")) if len(r) > 1)
    notes = read_tsv(os.path.join(raw, "notes.tsv"))
    systems = meta.get("systems", "direct lb-uring lb-epoll haproxy nginx haproxy-1m nginx-1m").split()
    lbs = [s for s in systems if s == "lb" or s.startswith("lb-")]
    peers = [s for s in systems if s != "direct" and s not in lbs]

    samples = {}
    for rnd, system, metric, value in read_tsv(os.path.join(raw, "results.tsv")):
        if value in ("NA", ""):
            continue
        samples.setdefault((system, metric), []).append(float(value))

    def med(system, metric):
        vals = samples.get((system, metric))
        return statistics.median(vals) if vals else None

    def per_round(system, metric, style):
        vals = samples.get((system, metric))
        return " / ".join(fmt(v, style) for v in vals) if vals else "n/a"

    header = ["workload"] + systems + ["lb best / best peer", "lb / direct"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    spread = ["| " + " | ".join(["workload"] + systems) + " |", "|" + "---|" * (len(systems) + 1)]
    for key, label, direction, style in ROWS:
        cells = [fmt(med(s, key), style) for s in systems]
        lb_best = best([med(s, key) for s in lbs], direction)
        peer_best = best([med(s, key) for s in peers], direction)
        r_peer = ratio(lb_best, peer_best)
        r_direct = ratio(lb_best, med("direct", key)) if "direct" in systems else None
        arrow = "↑" if direction == HIGHER else "↓"
        row = [f"{label} {arrow}"] + cells
        row += [f"{r_peer:.2f}×" if r_peer is not None else "–",
                f"{r_direct:.2f}×" if r_direct is not None else "–"]
        table.append("| " + " | ".join(row) + " |")
        spread.append("| " + " | ".join([label] + [per_round(s, key, style) for s in systems]) + " |")

    errors = []
    for s in systems:
        for mode in ("keepalive", "close"):
            total = sum(samples.get((s, f"wrk_{mode}_errors"), []))
            if total:
                errors.append(f"{s} wrk {mode}: {total:.0f} socket errors/non-2xx over all rounds")
        lost = sum(samples.get((s, "dns_lost"), []))
        if lost:
            errors.append(f"{s} dnsperf: {lost:.0f} queries lost over all rounds")
    held = {s: samples.get((s, "idle_held")) for s in systems if s != "direct"}

    quick = meta.get("quick") == "1"
    t_tcp, t_wrk, t_udp = meta.get("t_tcp", "5"), meta.get("t_wrk", "5"), meta.get("t_udp", "3")
    t_dns = meta.get("t_dns", "3")
    dns_c, dns_q = meta.get("dns_clients", "4"), meta.get("dns_outstanding", "100")
    md = []
    md.append("# Benchmarks\n")
    md.append("Generated by `make bench` (`bench/compare.sh`"
              + (" --quick" if quick else "") + "); do not edit by hand.\n")
    md.append(f"- date: {meta.get('date', '?')}; whole run {meta.get('elapsed', '?')} s, "
              f"{meta.get('rounds', '?')} round(s), medians shown")
    md.append(f"- machine: {meta.get('cpu', '?')}, {meta.get('cpus', '?')} CPUs, "
              f"kernel {meta.get('kernel', '?')}; load average (1/5/15 min) at start → end: "
              f"{meta.get('load', '?')}")
    md.append(f"- versions: lb {meta.get('lb', '?')}, HAProxy {meta.get('haproxy', '?')}, "
              f"nginx {meta.get('nginx', '?')} (stream), iperf3 {meta.get('iperf3', '?')}, "
              f"wrk {meta.get('wrk', '?')}, dnsmasq {meta.get('dnsmasq', '?')}, "
              f"dnsperf {meta.get('dnsperf', '?')}, redis {meta.get('redis', '?')}")
    md.append(f"- every balancer: {meta.get('workers', '?')} workers/threads, one backend, "
              "round robin, on 127.0.0.1\n")
    md.append("↑ higher is better, ↓ lower is better. \"lb best\" is the better of the lb "
              "engines; \"best peer\" the best of HAProxy and nginx, with their default buffers "
              "and, on the bulk rows, also tuned with 1 MiB buffers (haproxy-1m: "
              "`tune.bufsize 1048576`; nginx-1m: `proxy_buffer_size 1m`). For ↓ rows a ratio "
              "below 1 is a win.\n")
    md += table
    md.append("")
    if notes or errors:
        md.append("Notes:\n")
        for s, note in notes:
            md.append(f"- {s}: {note}")
        for e in errors:
            md.append(f"- {e}")
        md.append("")
    md.append("![ratios](bench.png)\n")
    md.append("## Per-round values\n")
    md += spread
    md.append("")
    held_txt = ", ".join(f"{s} {int(min(v))}" for s, v in held.items() if v)
    md.append("## Method\n")
    md.append(f"""- Backends: one `iperf3 -s` (TCP and UDP) and one nginx http server answering every
  request with a fixed 100-byte body ({meta.get('workers', '?')} workers, no logging, unlimited
  keep-alive), and one dnsmasq answering an A query for `{meta.get('dns_name', 'who.lb.test')}`
  from a `--host-record` (no upstream, no cache misses). Every system relays to these same three
  processes; "direct" is the client talking to them without a balancer, the ceiling.
- Balancers (configs in `bench/*.in`): lb with `engine` `io_uring` (lb-uring) and `epoll`
  (lb-epoll); HAProxy `mode tcp`, `nbthread {meta.get('workers', '?')}`, no logging; nginx
  `stream`, `worker_processes {meta.get('workers', '?')}`, `proxy_pass` (UDP listener with
  `reuseport` so a flow stays on one worker; the DNS listener with `proxy_responses 1` and
  `proxy_timeout 1s`, as usually configured for DNS). HAProxy has no UDP, so its UDP and DNS
  rows are n/a. Otherwise stock settings. Each listens on its own
  loopback ports; system daemons, if any, are not touched.
- Each round starts every balancer fresh, then runs each workload on every system in turn; the
  order of systems rotates from round to round. Medians over rounds; per-round values above.
- Throughput is the receiver side of iperf3. UDP rows report iperf3's loss at a fixed
  offered rate (datagrams of {meta.get('udp_len', '1200')} bytes).
- UDP from a GSO sender: `bench/helper.py gsoblast` sends 1 Gbit/s for {t_udp} s as a QUIC
  stack does, runs of 40 datagrams of 1,200 bytes in one `UDP_SEGMENT` send each, to the
  balancer, whose backend is a sink (with `UDP_GRO`) in the same helper that counts the
  datagrams arriving; the CPU row is the balancer's utime+stime over the run per datagram
  received. On loopback only GSO-sent datagrams reach a `UDP_GRO` socket as one message, so
  this row (not the iperf3 rows) shows what receiving runs whole is worth.
- DNS: dnsperf, {dns_c} clients (UDP sockets) keeping up to {dns_q} queries in flight for
  {t_dns} s. dnsmasq is single-threaded, so the direct figure is dnsmasq's own ceiling and a
  balancer can at best match it; with a fixed number of queries in flight the average latency
  is mostly queueing (about {dns_q} / queries per second), so it mirrors the queries/s row.
- Redis: one redis-server (no persistence) behind every system; `redis-benchmark -t get
  -c {meta.get('redis_conns', '50')} -n {meta.get('redis_requests', '?')}`, one request in
  flight per connection (no pipelining); p50/p99 are redis-benchmark's own percentiles.
- PostgreSQL {meta.get('postgres', '?')}: one throw-away cluster (trust authentication, fsync
  off, `pgbench -i -s {meta.get('pg_scale', '10')}`) behind every system; `pgbench -S -c
  {meta.get('pg_clients', '16')} -j 2 -T {meta.get('t_pg', '?')}`: select-only transactions on
  connections held for the run, so the balancer's relaying is what differs. tps is pgbench's
  "without initial connection time"; latency its average; the CPU row is the balancer's
  utime+stime over the run per transaction.
- Memory: after a warm-up of 64 connections, {meta.get('idle_conns', '?')} idle TCP connections
  are opened through the balancer to the http backend (no bytes sent); once the balancer holds
  them to the backend (counted with `ss`), the growth of the balancer's summed Pss
  (`/proc/PID/smaps_rollup`, all its processes) is divided by the connections held
  ({held_txt or 'n/a'}). KB = 1024 bytes. The kernel row is the whole machine's growth of slab
  (sockets, files, epoll and io_uring objects) plus TCP's socket-buffer pages
  (`/proc/meminfo` Slab, `/proc/net/sockstat` TCP mem) over the same step; "direct" opens the
  connections straight to the backend, so a balancer's own kernel memory per connection is its
  figure minus direct's (two more sockets per connection). UDP sessions (lb only; nginx's
  DNS listener ends a session at its reply): {meta.get('udp_idle_sessions', '2000')} client
  sockets, opened before the first reading, each send one DNS query through the balancer and
  get its answer; the growth of the balancer's Pss, and of the machine's kernel memory (the
  session sockets lb connects to the backend), is divided by the answers. The count is
  capped by RLIMIT_NOFILE ({meta.get('nofile', '?')} here; each relayed connection takes two
  descriptors in the balancer).
- CPU per GB: utime+stime of all the balancer's processes (`/proc/PID/stat`) over the two
  bulk TCP runs, divided by the bytes iperf3 received in them.
- CPU per keep-alive request, split: the balancer's utime and stime over the wrk run (this
  kernel has no IRQ time accounting, so stime includes the softirq work, such as loopback
  delivery to the peer, that ran in the balancer's context), and the whole machine's softirq
  time from `/proc/stat` (wrk's and the backend's too; the direct column is the baseline),
  each per request.
- Client, balancer and backends share the machine's {meta.get('cpus', '?')} CPUs, as in the
  numbers users measure on one host; nothing is pinned. Absolute numbers drift between runs;
  compare columns within one run.
""")
    md.append("## Commands\n")
    md.append("PORT is the system's listener (the backend's own port for direct).\n")
    md.append("```")
    md.append(f"iperf3 -c 127.0.0.1 -p PORT -P 1 -t {t_tcp} --connect-timeout 3000 -J")
    md.append(f"iperf3 -c 127.0.0.1 -p PORT -P 4 -t {t_tcp} --connect-timeout 3000 -J")
    md.append(f"wrk -t 2 -c {meta.get('wrk_conns', '50')} -d {t_wrk}s --latency --timeout 2s "
              "http://127.0.0.1:PORT/")
    md.append(f"wrk -t 2 -c {meta.get('wrk_conns', '50')} -d {t_wrk}s --latency --timeout 2s "
              "-H 'Connection: close' http://127.0.0.1:PORT/")
    for rate in (200, 500, 1000):
        md.append(f"iperf3 -c 127.0.0.1 -p PORT -u -b {rate}M -l {meta.get('udp_len', '1200')} "
                  f"-t {t_udp} --connect-timeout 3000 -J")
    md.append(f"python3 bench/helper.py gsoblast PORT BACKEND_PORT {t_udp} 1000"
              "   # runs of 40 x 1200 B per UDP_SEGMENT send; a UDP_GRO sink on BACKEND_PORT")
    md.append(f"dnsperf -s 127.0.0.1 -p PORT -d QUERYFILE -l {t_dns} -c {dns_c} -q {dns_q}"
              f"   # QUERYFILE: one line, '{meta.get('dns_name', 'who.lb.test')} A'")
    md.append(f"redis-benchmark -h 127.0.0.1 -p PORT -c {meta.get('redis_conns', '50')} "
              f"-n {meta.get('redis_requests', '?')} -t get --csv")
    md.append(f"pgbench -h 127.0.0.1 -p PORT -U postgres -c {meta.get('pg_clients', '16')} -j 2 "
              f"-S -T {meta.get('t_pg', '?')} postgres")
    md.append(f"python3 bench/helper.py idle PORT BACKEND_PORT {meta.get('idle_conns', '?')} PID")
    md.append("iperf3 -s -B 127.0.0.1 -p BACKEND_PORT")
    md.append("dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.1 "
              "--bind-interfaces --port=BACKEND_PORT "
              f"--host-record={meta.get('dns_name', 'who.lb.test')},10.0.0.1   # single-threaded")
    md.append("nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'     # backend and nginx stream")
    md.append("haproxy -db -f DIR/haproxy.cfg")
    md.append("lb -c DIR/lb.json")
    md.append("```\n")
    md.append("Raw per-round output (iperf3 JSON, wrk and dnsperf text, logs) is kept in `docs/bench-raw/` "
              "(not committed).")

    # Results measured on their own are carried into this report, so that every figure is in
    # one place: the health-check overhead (bench/health_overhead.sh), and before/after runs
    # of this benchmark around a change that had to show it costs the data path nothing.
    carried = [("BENCHMARKS-health.md", "Health-check overhead (bench/health_overhead.sh, run separately)"),
               ("BENCHMARKS-changes.md", "Before and after changes (this benchmark, run twice)")]
    for name, title in carried:
        path = os.path.join(os.path.dirname(os.path.abspath(out_md)), name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            body = f.read().split("\n", 1)[1]
        md.append(f"\n## {title}\n")
        md.append(body.replace("\n## ", "\n### ").strip())

    with open(out_md, "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(table))
    for s, note in notes:
        print(f"note: {s}: {note}")
    for e in errors:
        print(f"note: {e}")

    # Chart data: one row per workload, one column per system.
    def write_dat(path, rows, norm):
        """Returns how many cells hold a number (gnuplot fails on a panel with none)."""
        cells = 0
        with open(path, "w") as f:
            f.write("label " + " ".join(systems) + "\n")
            for key, label in rows:
                base = norm(key)
                vals = []
                for s in systems:
                    v = med(s, key)
                    vals.append("NA" if v is None or not base else f"{v / base:.3f}")
                cells += sum(1 for v in vals if v != "NA")
                f.write(f'"{label}" ' + " ".join(vals) + "\n")
        return cells

    thr = os.path.join(raw, "chart-throughput.dat")
    cost = os.path.join(raw, "chart-cost.dat")
    has_thr = write_dat(thr, THROUGHPUT, lambda k: med("direct", k)) > 0
    direction = {k: d for k, _, d, _ in ROWS}
    has_cost = write_dat(cost, COSTS, lambda k: best([med(s, k) for s in peers], direction[k])) > 0
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no chart", file=sys.stderr)
        return 0
    if not has_thr and not has_cost:
        print("nothing to chart", file=sys.stderr)
        return 0
    plot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")
    # All-n/a columns make gnuplot warn; show its stderr only when it fails.
    res = subprocess.run(["gnuplot", "-e", f"thr='{thr}'; cost='{cost}'; out='{out_png}'; "
                          f"ncol={len(systems) + 1}; has_thr={int(has_thr)}; "
                          f"has_cost={int(has_cost)}", plot],
                         capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

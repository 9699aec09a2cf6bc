#!/usr/bin/env python3
"""Measurement helpers for bench/compare.sh: probing a balancer (HTTP, DNS), holding
idle connections while reading its memory, CPU time of a process tree, and parsing
iperf3/wrk/dnsperf output into single numbers. Standard library only."""

import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time

# utime/stime in /proc/PID/stat are in clock ticks; this converts them to seconds.
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pids):
    """The given pids plus all their live descendants (nginx workers, etc.)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
    out = set(p for p in pids if p in parent)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in out and pid not in out:
                out.add(pid)
                grew = True
    return sorted(out)


def cpu_split(pids):
    """(utime, stime) seconds of every process in the trees (threads included). Without
    IRQ time accounting stime includes the softirq work the kernel ran in their context."""
    user = system = 0
    for pid in tree(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids):
    """utime + stime of every process in the trees (threads included)."""
    return sum(cpu_split(pids))


def softirq_seconds():
    """Softirq time of the whole machine (all CPUs, all processes) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[7]) / CLK_TCK


def mem_kb(pids):
    """Pss (kB) summed over the trees; VmRSS where smaps_rollup is missing.
    Pss splits pages shared between nginx's master and workers fairly."""
    total = 0
    for pid in tree(pids):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                m = re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M)
        except OSError:
            m = None
        if m is None:
            try:
                with open(f"/proc/{pid}/status") as f:
                    m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
            except OSError:
                m = None
        if m:
            total += int(m.group(1))
    return total


def http_get(port, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def cmd_probe(args):
    """Exit 0 when an HTTP GET through PORT returns 200."""
    port = int(args[0])
    try:
        data = http_get(port)
    except OSError as e:
        print(f"probe 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    if not data.startswith(b"HTTP/1.1 200"):
        print(f"probe 127.0.0.1:{port}: unexpected reply {data[:40]!r}", file=sys.stderr)
        return 1
    return 0


def dns_query(name, qid):
    """A recursion-desired query for NAME's A record."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def cmd_dnsprobe(args):
    """dnsprobe PORT NAME : exit 0 when an A query for NAME through 127.0.0.1:PORT (UDP)
    gets a NOERROR reply with an answer; three tries, 1 s each."""
    port, name = int(args[0]), args[1]
    err = "no reply"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for qid in (0x1b01, 0x1b02, 0x1b03):
            try:
                s.sendto(dns_query(name, qid), ("127.0.0.1", port))
                while True:
                    data = s.recv(4096)
                    if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                        break
            except OSError as e:
                err = str(e)
                continue
            flags, ancount = struct.unpack("!H", data[2:4])[0], struct.unpack("!H", data[6:8])[0]
            if flags & 0x8000 and (flags & 0xF) == 0 and ancount > 0:
                return 0
            err = f"reply rcode {flags & 0xF}, {ancount} answers"
    print(f"dnsprobe 127.0.0.1:{port} {name}: {err}", file=sys.stderr)
    return 1


def established_to(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=30).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def kernel_kb():
    """Kernel memory that sockets take, whole machine: slab (socket, inode, file, dentry,
    epoll and io_uring objects) plus TCP's socket buffer pages, in kB."""
    slab = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                slab = int(line.split()[1])
    pages = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                pages = int(parts[parts.index("mem") + 1])
    return slab + pages * (os.sysconf("SC_PAGE_SIZE") // 1024)


def cmd_idle(args):
    """idle PORT BACKEND_PORT COUNT PID... : open COUNT idle connections through
    the balancer at PORT (or straight to the backend, without PIDs), wait until
    COUNT connections to BACKEND_PORT are established, and print 'bytes_per_conn
    held kernel_bytes_per_conn': the memory delta of the PID trees, and the whole
    machine's kernel delta (client, balancer and backend sockets)."""
    port, backend, count = int(args[0]), int(args[1]), int(args[2])
    pids = [int(p) for p in args[3:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    # Warm-up: lazily initialised per-worker state must not count as per-connection.
    warm = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(64)]
    time.sleep(0.3)
    for s in warm:
        s.close()
    time.sleep(0.7)
    before_conns = established_to(backend)
    before = mem_kb(pids)
    kbefore = kernel_kb()

    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError as e:
        print(f"idle: opened {len(socks)} of {count}: {e}", file=sys.stderr)
    deadline = time.time() + 15
    held = 0
    while time.time() < deadline:
        held = established_to(backend) - before_conns
        if held >= len(socks):
            break
        time.sleep(0.25)
    time.sleep(1.0)
    held = established_to(backend) - before_conns
    after = mem_kb(pids)
    kafter = kernel_kb()
    for s in socks:
        s.close()
    if held <= 0 or not socks:
        print("NA 0 NA")
        return 1
    # Divide by what the balancer actually holds to the backend, at most what we opened.
    n = min(held, len(socks))
    print(f"{(after - before) * 1024 / n:.0f} {n} {(kafter - kbefore) * 1024 / n:.0f}")
    return 0


def cmd_udpidle(args):
    """udpidle PORT NAME COUNT PID... : COUNT UDP clients (one socket each) each send one
    A query for NAME to 127.0.0.1:PORT and wait for its answer, so that the balancer holds
    a session per client; print 'bytes_per_session answered kernel_bytes_per_session': the
    memory delta of the PID trees, and the whole machine's kernel delta."""
    port, name, count = int(args[0]), args[1], int(args[2])
    pids = [int(p) for p in args[3:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count + 256, hard), hard))

    def ask(socks):
        # 50 at a time, each group answered before the next: dnsmasq's socket buffer is
        # small, and a lost query would cost its client the whole timeout.
        answered = 0
        for g in range(0, len(socks), 50):
            group = socks[g:g + 50]
            for i, s in enumerate(group):
                s.sendto(dns_query(name, (g + i) & 0xFFFF), ("127.0.0.1", port))
            for s in group:
                try:
                    s.recv(4096)
                    answered += 1
                except OSError:
                    pass
        return answered

    def open_socks(n):
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.5)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return socks

    warm = open_socks(64)  # lazily initialised per-worker state is not per-session
    ask(warm)
    # The client sockets are opened before the first reading: only the balancer's sessions
    # (its sockets and state) and the backend's work fall between the two readings.
    socks = open_socks(count)
    time.sleep(0.5)
    before, kbefore = mem_kb(pids), kernel_kb()
    answered = ask(socks)
    time.sleep(1.0)
    after, kafter = mem_kb(pids), kernel_kb()
    for s in socks + warm:
        s.close()
    if answered == 0:
        print("NA 0 NA")
        return 1
    print(f"{(after - before) * 1024 / answered:.0f} {answered} "
          f"{(kafter - kbefore) * 1024 / answered:.0f}")
    return 0


def cmd_gsoblast(args):
    """gsoblast PORT SINK_PORT SECONDS MBITS [SEGS] : send to 127.0.0.1:PORT, for SECONDS at
    MBITS Mbit/s, runs of SEGS (40) datagrams of 1,200 bytes as one UDP GSO message each (as
    a QUIC stack sends; SEGS 1: one by one), while a sink with UDP_GRO on
    127.0.0.1:SINK_PORT (the balancer's backend) counts what arrives; print 'sent received
    loss_percent'."""
    import threading
    port, sink_port, seconds, mbits = int(args[0]), int(args[1]), float(args[2]), float(args[3])
    seg, segs = 1200, int(args[4]) if len(args) > 4 else 40
    sol_udp, udp_segment, udp_gro = 17, 103, 104
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(sol_udp, udp_gro, 1)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.bind(("127.0.0.1", sink_port))
    sink.settimeout(0.5)
    received = [0]

    def drain():
        while True:
            try:
                data, anc, _, _ = sink.recvmsg(65536, socket.CMSG_SPACE(4))
            except (socket.timeout, OSError):
                return
            size = len(data)
            for level, kind, val in anc:
                if level == sol_udp and kind == udp_gro:
                    size = struct.unpack("i", val[:4])[0]
            received[0] += max(1, -(-len(data) // size)) if size else 1

    t = threading.Thread(target=drain)
    t.start()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    payload = bytes(seg * segs)
    ctl = [(sol_udp, udp_segment, struct.pack("H", seg))] if segs > 1 else []
    interval = seg * segs * 8 / (mbits * 1e6)
    sent, start = 0, time.monotonic()
    nxt = start
    while time.monotonic() - start < seconds:
        try:
            out.sendmsg([payload], ctl, 0, ("127.0.0.1", port))
            sent += segs
        except OSError:
            pass
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    t.join()
    out.close()
    sink.close()
    loss = 100.0 * (sent - received[0]) / sent if sent else 0.0
    print(f"{sent} {received[0]} {loss:.2f}")
    return 0


def cmd_cpu(args):
    print(f"{cpu_seconds([int(p) for p in args]):.3f}")
    return 0


def cmd_cpusplit(args):
    """cpusplit [PID...]: 'user system softirq' seconds: the trees' user and system time
    (NA NA without pids) and the whole machine's softirq time."""
    if args:
        user, system = cpu_split([int(p) for p in args])
        print(f"{user:.3f} {system:.3f} {softirq_seconds():.3f}")
    else:
        print(f"NA NA {softirq_seconds():.3f}")
    return 0


def cmd_iperf(args):
    """iperf FILE tcp|udp : 'gbps bytes' (receiver side) or 'loss_percent'."""
    path, kind = args
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        print("no JSON output (killed by timeout?)", file=sys.stderr)
        print("NA NA")
        return 1
    if "error" in doc or "end" not in doc:
        print(doc.get("error", "no result"), file=sys.stderr)
        print("NA NA")
        return 1
    end = doc["end"]
    if kind == "tcp":
        s = end.get("sum_received", {})
        if not s.get("bytes"):
            print("NA NA")
            return 1
        print(f"{s['bits_per_second'] / 1e9:.3f} {s['bytes']}")
        return 0
    s = end.get("sum_received") or end.get("sum") or {}
    if "lost_percent" not in s or not s.get("packets"):
        print("NA NA")
        return 1
    print(f"{s['lost_percent']:.3f} {s['packets']}")
    return 0


UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def cmd_wrk(args):
    """wrk FILE : 'requests_per_sec p99_ms errors'."""
    try:
        with open(args[0]) as f:
            text = f.read()
    except OSError:
        print("NA NA NA")
        return 1
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs += int(m.group(1))
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not rps or not total or int(total.group(1)) == 0:
        print("NA NA NA")
        return 1
    p99_ms = f"{float(p99.group(1)) * UNIT_MS[p99.group(2)]:.3f}" if p99 else "NA"
    print(f"{float(rps.group(1)):.0f} {p99_ms} {errs}")
    return 0


def cmd_dnsperf(args):
    """dnsperf FILE : 'queries_per_sec avg_latency_ms lost_queries'."""
    try:
        with open(args[0]) as f:
            text = f.read()
    except OSError:
        print("no dnsperf output", file=sys.stderr)
        print("NA NA NA")
        return 1
    done = re.search(r"^\s*Queries completed:\s+(\d+)", text, re.M)
    qps = re.search(r"^\s*Queries per second:\s+([\d.]+)", text, re.M)
    lat = re.search(r"^\s*Average Latency \(s\):\s+([\d.]+)", text, re.M)
    lost = re.search(r"^\s*Queries lost:\s+(\d+)", text, re.M)
    if not done or not qps or int(done.group(1)) == 0:
        why = [line for line in text.splitlines() if line.startswith(("[Fatal]", "Error", "[Error]"))]
        print(why[0] if why else "no queries completed (killed by timeout?)", file=sys.stderr)
        print("NA NA NA")
        return 1
    lat_ms = f"{float(lat.group(1)) * 1e3:.3f}" if lat else "NA"
    print(f"{float(qps.group(1)):.0f} {lat_ms} {lost.group(1) if lost else 'NA'}")
    return 0


def cmd_sched(args):
    """sched < `perf sched timehist` output: per task group (balancer, redis-server,
    redis-benchmark) the number of times it ran, its scheduling delay (woken to running) and
    its on-CPU stretches, as percentiles in ms. For bench/redis_tail.sh."""
    delay, run = {}, {}
    for line in sys.stdin:
        f = line.split()
        if len(f) < 6 or not f[0][:1].isdigit():
            continue
        name = f[2].split("[")[0]
        if name.startswith(("lb", "haproxy")):
            group = "balancer"
        elif name.startswith(("redis-server", "redis-benchmark")):
            group = name.split(":")[0]
        else:
            continue
        try:
            d, r = float(f[4]), float(f[5])
        except ValueError:
            continue
        delay.setdefault(group, []).append(d)
        run.setdefault(group, []).append(r)

    def pct(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * p))]

    for g in sorted(delay):
        d, r = delay[g], run[g]
        print(f"  {g:16s} ran {len(d):6d}x  sched delay p50 {pct(d, .5):.3f} p99 {pct(d, .99):.3f}"
              f" p99.9 {pct(d, .999):.3f} max {max(d):.3f}  on-CPU p50 {pct(r, .5):.3f}"
              f" p99 {pct(r, .99):.3f} max {max(r):.3f}")
    return 0


def main():
    cmds = {"probe": cmd_probe, "dnsprobe": cmd_dnsprobe, "idle": cmd_idle, "cpu": cmd_cpu,
            "udpidle": cmd_udpidle,
            "cpusplit": cmd_cpusplit, "gsoblast": cmd_gsoblast,
            "iperf": cmd_iperf, "wrk": cmd_wrk, "dnsperf": cmd_dnsperf, "sched": cmd_sched}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(f"usage: helper.py {'|'.join(cmds)} ARGS...", file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

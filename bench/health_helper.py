#!/usr/bin/env python3
"""Helpers for bench/health_overhead.sh: the lb configuration with N backends, CPU time of
lb split by thread (main, workers, prober), and the markdown report. Standard library only.

  health_helper.py config OUT ENGINE WORKERS LEVEL LISTEN_PORT BACKEND_BASE N CHECK
                          INTERVAL TIMEOUT
  health_helper.py threads LB_PID WORKERS [OTHER_PID...]
  health_helper.py prober_tid LB_PID WORKERS
  health_helper.py report RESULTS_TSV META_TSV
"""

import json
import math
import os
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cmd_config(args):
    out, engine, workers, level, port, base, n, check, interval, timeout = args
    health = {"type": "none"}
    if check != "none":
        health = {"type": check, "interval": interval, "timeout": timeout, "rise": 2, "fall": 3}
        if check == "http":
            health["path"] = "/"
    cfg = {
        "engine": engine,
        "workers": int(workers),
        # One control socket per instance: two lbs run at once in the control mode.
        "control": {"socket": os.path.splitext(os.path.abspath(out))[0] + ".sock"},
        "log": {"level": level},
        "listeners": [{"name": "web", "listen": f"127.0.0.1:{port}", "pool": "p"}],
        "pools": [{
            "name": "p",
            "algorithm": "round_robin",
            "health": health,
            "backends": [{"name": f"b{i}", "address": f"127.0.0.1:{int(base) + i}"}
                         for i in range(int(n))],
        }],
    }
    with open(out, "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    return 0


def ticks(path):
    """utime + stime (clock ticks) from a /proc stat file, None if it is gone."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def comm(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def lb_threads(pid):
    """lb's threads other than main, oldest first, as (tid, ticks), and the ticks of the
    main thread and of the kernel's io_uring helpers (comm iou-*), which act for the
    workers. Threads that end meanwhile are left out."""
    main = other = 0
    threads = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        tids = []
    for tid in tids:
        t = ticks(f"/proc/{pid}/task/{tid}/stat")
        if t is None:
            continue
        if tid == pid:
            main = t
        elif comm(f"/proc/{pid}/task/{tid}/comm").startswith("iou-"):
            other += t
        else:
            threads.append((tid, t))
    return threads, main, other


def cmd_prober_tid(args):
    """Print the tid of lb's prober thread: lb creates main, the workers, then the prober
    (lb/main.c), and the threads are not named, so it is the newest non-main lb thread when
    there are exactly WORKERS + 1 of them. Prints nothing otherwise."""
    pid, nworkers = int(args[0]), int(args[1])
    threads, _, _ = lb_threads(pid)
    if len(threads) == nworkers + 1:
        print(threads[-1][0])
    return 0


def cmd_threads(args):
    """Print 'total main workers prober other' CPU seconds of lb, the summed CPU of the
    other pids (the test backends), the time of the reading (epoch seconds), then the
    machine's busy, total and steal CPU seconds (all CPUs, /proc/stat).

    lb creates its threads in a fixed order: main, the workers, then the prober
    (lb/main.c), and the threads are not named, so the prober is the newest non-main lb
    thread when there are exactly WORKERS + 1 of them (cmd_prober_tid). Kernel io_uring
    helper threads (comm iou-*) act for the workers and count as 'other'. prober is NA when
    the layout differs (its time is then in workers)."""
    pid, nworkers = int(args[0]), int(args[1])
    when = time.time()
    total = ticks(f"/proc/{pid}/stat")
    if total is None:
        print(f"NA NA NA NA NA NA {when:.3f} NA NA NA")
        return 1
    threads, main, other = lb_threads(pid)
    lb_ticks = [t for _, t in threads]
    # The sum of the threads read here, not the process's own stat read a moment earlier,
    # so that the parts always add up to the total.
    total = main + other + sum(lb_ticks)
    prober = "NA"
    if len(lb_ticks) == nworkers + 1:
        prober = f"{lb_ticks[-1] / CLK_TCK:.2f}"
        workers = sum(lb_ticks[:-1])
    else:
        workers = sum(lb_ticks)
    backends = 0
    for p in args[2:]:
        backends += ticks(f"/proc/{p}/stat") or 0
    busy, alltime, steal = machine()
    print(f"{total / CLK_TCK:.2f} {main / CLK_TCK:.2f} {workers / CLK_TCK:.2f} {prober} "
          f"{other / CLK_TCK:.2f} {backends / CLK_TCK:.2f} {when:.3f} "
          f"{busy / CLK_TCK:.2f} {alltime / CLK_TCK:.2f} {steal / CLK_TCK:.2f}")
    return 0


def machine():
    """Ticks of all CPUs from /proc/stat: (busy, busy + idle + iowait, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait, steal


# ------------------------------------------------------------------------ report

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load(path):
    """results.tsv rows: round mode metric value -> {(mode, metric): {round: value}}."""
    data = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            rnd, mode, metric, value = parts
            data.setdefault((mode, metric), {})[int(rnd)] = num(value)
    return data


def med(data, mode, metric):
    vals = [v for v in data.get((mode, metric), {}).values() if v is not None]
    return statistics.median(vals) if vals else None


def total(data, mode, metric):
    vals = [v for v in data.get((mode, metric), {}).values() if v is not None]
    return sum(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def paired(data, metric, a="on", b="off"):
    """Per-round a/b ratios of the rounds where both runs have a value."""
    on = data.get((a, metric), {})
    off = data.get((b, metric), {})
    return [on[r] / off[r] for r in sorted(on) if on.get(r) and off.get(r)]


def spread(data, mode, metric):
    """Half the range of one mode's runs, relative to their median: the run-to-run noise."""
    vals = [v for v in data.get((mode, metric), {}).values() if v is not None]
    if len(vals) < 2:
        return None
    return (max(vals) - min(vals)) / 2 / statistics.median(vals)


def per(data, mode, num_metric, den_metric, scale):
    """sum(num) / sum(den) over the rounds that have both (e.g. worker CPU seconds per
    connection). Pooled rather than a median of per-run ratios, so that a part (the
    prober's CPU) never shows above its whole (lb's CPU)."""
    a = data.get((mode, num_metric), {})
    b = data.get((mode, den_metric), {})
    rounds = [r for r in a if a.get(r) is not None and b.get(r)]
    if not rounds:
        return None
    return sum(a[r] for r in rounds) / sum(b[r] for r in rounds) * scale


def sign_p(vals):
    """Two-sided sign test: chance of at least this many rounds on one side of 1."""
    n = len(vals)
    lower = sum(1 for v in vals if v < 1)
    k = max(lower, n - lower)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)


def prange(vals):
    if not vals:
        return "n/a"
    lower = sum(1 for v in vals if v < 1)
    return (f"{statistics.median(vals):.3f} ({min(vals):.3f} – {max(vals):.3f}; "
            f"lower in {lower} of {len(vals)})")


def verdict(data, base, label):
    """Is the checks-on new-connection rate within the run-to-run noise of BASE? Per-round
    ratios (runs next to each other in time) are robust to the machine's drift; the noise
    is how much BASE's own runs differ from each other."""
    pr = paired(data, "close_cps", "on", base)
    noise = spread(data, base, "close_cps")
    if not pr:
        return f"- on vs {label}: n/a (no new-connection figures)."
    if noise is None:
        return (f"- on vs {label}: {pr[0]:.3f} × with one round; the full run has the noise "
                "estimate.")
    pm, p = statistics.median(pr), sign_p(pr)
    if abs(pm - 1) <= noise and p > 0.1:
        said = "within noise"
    else:
        said = f"{'lower' if pm < 1 else 'higher'}, beyond noise"
    return (f"- on vs {label}: {pm:.3f} × per round (median of {len(pr)}; lower in "
            f"{sum(1 for v in pr if v < 1)}, sign test p = {p:.2f}); {label} runs vary by "
            f"±{noise * 100:.1f} %: **{said}**.")


def cmd_report(args):
    data = load(args[0])
    meta = {}
    with open(args[1]) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    check, n, interval = meta["check"], meta["backends"], meta["interval"]
    modes = [m for m in ("off", "ctl", "on") if m in meta["modes"].split()]
    ctl = "ctl" in modes
    out = []
    w = out.append
    w("## Health-check overhead on the data plane")
    w("")
    w(f"{n} HTTP backends (lb-testsrv), {meta.get('lb', 'lb')}, engine `{meta['engine']}` with {meta['workers']} "
      f"workers, log level `{meta['log_level']}`. **on**: `\"type\": \"{check}\"` every "
      f"{interval} (timeout {meta['timeout']}, rise 2, fall 3) on all {n} backends; "
      f"**off**: `\"type\": \"none\"`" +
      (f"; **control**: off, while a second, idle lb performs the same checks on the same "
       f"backends (the machine carries the same probing load, but none of it in the "
       f"measured process)" if ctl else "") +
      f". Client: wrk -t 2 -c {meta['wrk_conns']} -d {meta['t_wrk']}s, new connections "
      f"with `Connection: close`, then keep-alive. {meta['rounds']} round(s), each running "
      f"every mode once, in an order rotating between rounds; rates are medians over "
      f"rounds, CPU figures pool all rounds (CPU time over wall time or over connections). {meta['date']}, {meta['cpus']} CPUs ({meta['cpu']}), kernel "
      f"{meta['kernel']}; load average at start {meta['load_start']}, at end "
      f"{meta['load_end']}{' (quick run)' if meta['quick'] == '1' else ''}.")
    w("")
    names = {"off": "off", "ctl": "control", "on": "on"}
    hdr = "| | " + " | ".join(names[m] for m in modes) + " | on / off per round"
    hdr += " | on / control per round |" if ctl else " |"
    w(hdr)
    w("|---|" + "---:|" * len(modes) + "---|" + ("---|" if ctl else ""))

    def row(label, cells, digits=0, ratios=None):
        extra = ratios if ratios else ["", ""]
        w("| " + " | ".join([label] + [fmt(c, digits) for c in cells] +
                            extra[:2 if ctl else 1]).replace("  ", " ") + " |")

    for metric, label in (("close_cps", "new connections/s (`Connection: close`)"),
                          ("ka_rps", "keep-alive requests/s")):
        row(label, [med(data, m, metric) for m in modes], 0,
            [prange(paired(data, metric, "on", "off")),
             prange(paired(data, metric, "on", "ctl"))])
    row("keep-alive p99 latency (ms)", [med(data, m, "ka_p99_ms") for m in modes], 2)
    for phase, label in (("idle", "idle"), ("close", "new-connection run"),
                         ("ka", "keep-alive run")):
        row(f"health checks/s performed, {label}",
            [med(data, m, f"{phase}_checks_s") for m in modes])
    w("| failed checks / DOWN transitions, all runs | " + " | ".join(
        f"{fmt(total(data, m, 'failed'))} / {fmt(total(data, m, 'downs'))}" for m in modes) +
      " | |" + (" |" if ctl else ""))
    row(f"backends UP before measuring (of {n})",
        [med(data, m, "up") if m != "off" else None for m in modes])
    for phase, label in (("idle", "idle, no traffic"), ("close", "new-connection run"),
                         ("ka", "keep-alive run")):
        wall = f"{phase}_cpu_wall"
        row(f"lb CPU, {label} (% of one core)",
            [per(data, m, f"{phase}_cpu_total", wall, 100) for m in modes], 1)
        row("&nbsp;&nbsp;of which its prober thread",
            [per(data, m, f"{phase}_cpu_prober", wall, 100) for m in modes], 1)
    if ctl:
        row("control checker lb CPU, new-connection run (% of one core)",
            [per(data, m, "close_cpu_checker", "close_cpu_wall", 100) if m == "ctl" else None
             for m in modes], 1)
    row("worker-thread CPU per new connection (µs)",
        [per(data, m, "close_cpu_workers", "close_conns", 1e6) for m in modes], 1)
    row("worker-thread CPU per keep-alive request (µs)",
        [per(data, m, "ka_cpu_workers", "ka_reqs", 1e6) for m in modes], 1)
    row("backends' CPU, idle: answering checks (% of one core)",
        [per(data, m, "idle_cpu_backends", "idle_cpu_wall", 100) for m in modes], 1)
    row("backends' CPU, new-connection run (% of one core)",
        [per(data, m, "close_cpu_backends", "close_cpu_wall", 100) for m in modes], 1)
    row(f"machine busy, new-connection run (% of {meta['cpus']} CPUs)",
        [per(data, m, "close_machine_busy", "close_machine_all", 100) for m in modes], 1)
    row("&nbsp;&nbsp;of which stolen by the hypervisor",
        [per(data, m, "close_machine_steal", "close_machine_all", 100) for m in modes], 1)
    row("wrk socket errors + non-2xx, all runs",
        [(total(data, m, "close_errors") or 0) + (total(data, m, "ka_errors") or 0)
         for m in modes])
    flaps = [r for r, v in data.get(("on", "downs"), {}).items() if v]
    if flaps:
        w("")
        w(f"**Warning**: in {len(flaps)} of {len(data.get(('on', 'downs'), {}))} checks-on runs "
          f"checks timed out (timeout {meta['timeout']}) and backends were marked DOWN in the "
          "measured lb: the machine was too starved for that timeout (see the load average), "
          "so those runs measure flapping (and clients closed for want of a usable backend: "
          f"{fmt(total(data, 'on', 'no_backend_warnings'))} rate-limited warnings), not only "
          "the cost of checking. Rerun on a quieter machine, or with a longer --timeout.")
    w("")
    w("Verdicts, new-connection rate (within noise: the per-round median ratio is inside "
      "the baseline's own run-to-run spread, half its range over its median, and the rounds "
      "are not all on one side, two-sided sign test p > 0.1):")
    w("")
    w(verdict(data, "off", "off"))
    if ctl:
        w(verdict(data, "ctl", "control"))
    wr = ratio(per(data, "on", "close_cpu_workers", "close_conns", 1),
               per(data, "off", "close_cpu_workers", "close_conns", 1))
    prober = per(data, "on", "idle_cpu_prober", "idle_cpu_wall", 100)
    backends = per(data, "on", "idle_cpu_backends", "idle_cpu_wall", 100)
    w("")
    text = []
    if wr is not None:
        text.append(f"Worker threads spend {wr:.3f} × the CPU per new connection with checks "
                    "on as with them off; the checks' own CPU is in the prober thread.")
    if prober is not None and backends is not None:
        cpus = int(meta["cpus"])
        text.append(f"Without traffic, the checks cost {prober:.1f} % of one core in the "
                    f"prober and {backends:.1f} % in the backends answering them, "
                    f"{(prober + backends) / cpus:.1f} % of the machine's {cpus} CPUs: when "
                    "those are all busy (machine-busy row), that CPU is taken from the "
                    "workers, wrk and the backends whichever process probes" +
                    (", which is what the control isolates." if ctl else "."))
    count_by = meta.get("count_by", "log" if meta["log_level"] == "debug" else "none")
    if count_by == "perf":
        text.append("Checks/s are counted with perf over each measurement window: the TCP "
                    "connections that the prober thread of the lb that probes opens, one per "
                    "check (tracepoint sock:inet_sock_set_state into SYN_SENT)")
    elif count_by == "log":
        text.append("Checks/s are counted from the per-check debug lines of the lb that "
                    "probes, with timestamps inside each measurement window")
    else:
        text.append("Checks/s are not counted (no perf, and no line per check at log level "
                    "info)")
    if meta["log_level"] != "debug":
        text[-1] += "; failed checks are logged, so counted, only at log level debug"
    text[-1] += (f"; expected {n} / {interval} = {meta['expected_cps']}/s. CPU is utime + "
                 "stime from /proc; the prober is lb's last-created thread (main, workers, "
                 f"then prober). The {n} backends are {meta['testsrv_procs']} lb-testsrv "
                 f"processes ({meta['per_proc']} listeners each; it takes at most 64), on "
                 "the same CPUs as lb and wrk.")
    w(" ".join(text))
    print("\n".join(out))
    return 0


def main():
    cmds = {"config": cmd_config, "threads": cmd_threads, "prober_tid": cmd_prober_tid,
            "report": cmd_report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

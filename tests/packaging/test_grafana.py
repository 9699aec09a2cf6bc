#!/usr/bin/env python3
"""examples/grafana/lb-dashboard.json: valid JSON, every panel queries Prometheus, and every
lb_* metric its queries use is one lb exports (from a running lb's /metrics, with a tcp and a
udp listener, a health-checked pool and an ip_hash pool) and one docs/OPERATIONS.md documents.
Usage: test_grafana.py SOURCE_DIR BUILD_DIR"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

src, build = sys.argv[1], sys.argv[2]


def fail(msg):
    print("test_grafana: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


dash = json.load(open(os.path.join(src, "examples/grafana/lb-dashboard.json")))
ids, used = set(), set()
for p in dash["panels"]:
    if p["id"] in ids:
        fail("panel id %d twice" % p["id"])
    ids.add(p["id"])
    if not p.get("targets"):
        fail("panel %r has no query" % p["title"])
    for t in p["targets"]:
        names = re.findall(r"\blb_[a-z_]+", t["expr"])
        if not names:
            fail("panel %r queries no lb metric: %s" % (p["title"], t["expr"]))
        used.update(names)
for v in dash["templating"]["list"]:
    used.update(re.findall(r"\blb_[a-z_]+", v["query"]["query"]))

ops = open(os.path.join(src, "docs/OPERATIONS.md")).read()
for m in sorted(used):
    if "`" + m not in ops:
        fail("%s is not documented in docs/OPERATIONS.md" % m)

# A running lb: one health-checked tcp pool (a listening socket answers the checks), a udp
# listener and an ip_hash pool, so that every family of metrics is there.
backend = socket.socket()
backend.bind(("127.0.0.1", 0))
backend.listen(16)
bport = backend.getsockname()[1]
mport, tport, uport = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
tmp = tempfile.mkdtemp(prefix="lb-grafana.")
cfg = {
    "control": {"socket": tmp + "/lb.sock"},
    "metrics": {"listen": "127.0.0.1:%d" % mport},
    "listeners": [
        {"name": "t", "listen": "127.0.0.1:%d" % tport, "pool": "web"},
        {"name": "u", "protocol": "udp", "listen": "127.0.0.1:%d" % uport, "pool": "hash"},
    ],
    "pools": [
        {"name": "web", "health": {"type": "tcp", "interval": "100ms", "timeout": "100ms"},
         "backends": [{"name": "b", "address": "127.0.0.1:%d" % bport}]},
        {"name": "hash", "algorithm": "ip_hash",
         "backends": [{"name": "h", "address": "127.0.0.1:%d" % bport}]},
    ],
}
path = os.path.join(tmp, "lb.json")
json.dump(cfg, open(path, "w"))
lb = subprocess.Popen([os.path.join(build, "lb"), "-c", path], stderr=open(tmp + "/log", "w"))
try:
    exported, text = set(), ""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=2).read().decode()
        except OSError:
            time.sleep(0.1)
            continue
        exported = set(re.findall(r"^# TYPE (lb_[a-z_]+) ", text, re.M))
        if used <= exported:
            break
        time.sleep(0.2)
    missing = sorted(used - exported)
    if missing:
        fail("the dashboard queries metrics lb does not export: %s\n%s" % (missing, text[:2000]))
finally:
    lb.send_signal(signal.SIGTERM)
    lb.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)
print("test_grafana: %d panels; %d metrics queried, all exported and documented" % (len(dash["panels"]), len(used)))

#!/usr/bin/env python3
"""The status page in a real browser: headless Chromium loads GET / of lb's metrics listener,
the page refreshes itself from /status.json, and a backend the prober marked down shows as
DOWN (red row, badge text) while the other shows UP; a screenshot of it goes to OUT_PNG.
Also checks /status.json against lbctl's answers. Usage: test_status_page.py BUILD_DIR OUT_PNG"""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

build, out_png = sys.argv[1], sys.argv[2]


def fail(msg):
    print("test_status_page: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


browser = shutil.which("chromium") or shutil.which("chromium-browser")
if not browser:
    fail("chromium is not installed (make test installs the Debian package chromium)")

a, b = listener(), listener()
mport, lport = free_port(), free_port()
tmp = tempfile.mkdtemp(prefix="lb-status.")
cfg = {
    "control": {"socket": tmp + "/lb.sock"},
    "metrics": {"listen": "127.0.0.1:%d" % mport},
    "listeners": [{"name": "db", "listen": "127.0.0.1:%d" % lport, "pool": "pg"}],
    "pools": [{"name": "pg", "health": {"type": "tcp", "interval": "200ms", "timeout": "200ms",
                                        "rise": 1, "fall": 1},
               "backends": [{"name": "pg1", "address": "127.0.0.1:%d" % a.getsockname()[1]},
                            {"name": "pg2", "address": "127.0.0.1:%d" % b.getsockname()[1]}]}],
}
json.dump(cfg, open(tmp + "/lb.json", "w"))
lb = subprocess.Popen([os.path.join(build, "lb"), "-c", tmp + "/lb.json"],
                      stderr=open(tmp + "/lb.log", "w"))
base = "http://127.0.0.1:%d/" % mport


def status():
    return json.loads(urllib.request.urlopen(base + "status.json", timeout=2).read())


def chromium(*args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=" + tmp + "/chromium",
           "--virtual-time-budget=4000"] + list(args) + [base]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


try:
    deadline = time.time() + 10
    states = {}
    while time.time() < deadline:
        try:
            states = {x["name"]: x["state"] for x in status()["backends"]}
            if states == {"pg1": "up", "pg2": "up"}:
                break
        except OSError:
            pass
        time.sleep(0.1)
    if states != {"pg1": "up", "pg2": "up"}:
        fail("backends never both up: %s" % states)
    b.close()  # pg2's checks are refused from now on: marked down within ~400 ms
    while time.time() < deadline + 5 and status()["backends"][1]["state"] != "down":
        time.sleep(0.1)

    ctl = subprocess.run([os.path.join(build, "lbctl"), "-s", tmp + "/lb.sock", "--json",
                          "backends"], capture_output=True, text=True, timeout=10)
    names = [x["name"] for x in json.loads(ctl.stdout)]
    if names != [x["name"] for x in status()["backends"]]:
        fail("status.json's backends differ from lbctl backends: %s" % names)

    page = urllib.request.urlopen(base, timeout=2)
    html = page.read().decode()
    if "text/html" not in page.headers["Content-Type"]:
        fail("GET / is not HTML")
    for ext in ("http://", "https://", "//cdn"):
        if ("src=\"" + ext) in html or ("href=\"" + ext) in html:
            fail("the page loads an external asset")

    dom = chromium("--dump-dom")
    if dom.returncode != 0 or "<tbody" not in dom.stdout:
        fail("chromium --dump-dom failed (%d): %s" % (dom.returncode, dom.stderr[-500:]))
    d = dom.stdout
    refreshes = d.split('data-refreshes="')[1].split('"')[0] if 'data-refreshes="' in d else "0"
    if int(refreshes) < 2:
        fail("the page did not refresh itself (%s refreshes)" % refreshes)
    row = lambda key: d.split('data-backend="%s"' % key)[1].split("</tr>")[0] if ('data-backend="%s"' % key) in d else ""
    down, up = row("pg/pg2"), row("pg/pg1")
    if 'class="down"' not in d.split('data-backend="pg/pg2"')[0][-60:] + down[:40] or 'data-state="down"' not in down or ">DOWN<" not in down:
        fail("pg2 (marked down) is not shown as DOWN: %s" % down[:400])
    if 'data-state="up"' not in up or ">UP<" not in up:
        fail("pg1 is not shown as UP: %s" % up[:400])

    shot = chromium("--screenshot=" + os.path.abspath(out_png), "--window-size=1280,560",
                    "--hide-scrollbars")
    if shot.returncode != 0 or not os.path.exists(out_png) or os.path.getsize(out_png) < 5000:
        fail("no screenshot: %s" % shot.stderr[-500:])
    print("test_status_page: %s refreshes in the browser; pg2 DOWN, pg1 UP; screenshot %s" %
          (refreshes, out_png))
finally:
    lb.send_signal(signal.SIGTERM)
    lb.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)

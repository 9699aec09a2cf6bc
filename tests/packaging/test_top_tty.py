#!/usr/bin/env python3
"""lbctl top on a terminal (a pty): it redraws the screen every second with the backends and
quits with exit 0 when q is pressed, leaving the terminal as it found it.
Usage: test_top_tty.py BUILD_DIR"""
import json, os, pty, select, shutil, signal, socket, subprocess, sys, tempfile, time

build = sys.argv[1]


def fail(msg):
    print("test_top_tty: " + msg, file=sys.stderr)
    sys.exit(1)


tmp = tempfile.mkdtemp(prefix="lb-top.")
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
cfg = {"control": {"socket": tmp + "/lb.sock"},
       "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % port, "pool": "web"}],
       "pools": [{"name": "web", "backends": [{"name": "w1", "address": "127.0.0.1:9"},
                                              {"name": "w2", "address": "127.0.0.1:10"}]}]}
json.dump(cfg, open(tmp + "/lb.json", "w"))
lb = subprocess.Popen([os.path.join(build, "lb"), "-c", tmp + "/lb.json"], stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists(tmp + "/lb.sock"):
            break
        time.sleep(0.05)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(os.path.join(build, "lbctl"), ["lbctl", "-s", tmp + "/lb.sock", "top"])
    out, start = b"", time.time()
    while time.time() - start < 2.5:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            out += os.read(fd, 65536)
    os.write(fd, b"q")
    status = None
    start = time.time()
    while time.time() - start < 3 and status is None:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            status = st
        else:
            time.sleep(0.05)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        fail("q did not quit lbctl top within 3 s")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        fail("lbctl top exited with status %r" % status)
    clears = out.count(b"\x1b[H\x1b[2J")
    if clears < 2:
        fail("%d redraws in 2.5 s on a terminal:\n%r" % (clears, out[:500]))
    if out.count(b"w1") < 2 or out.count(b"w2") < 2 or b"q quits" not in out:
        fail("the backends or the q hint are missing:\n%r" % out[:800])
    print("test_top_tty: %d redraws, q quit with exit 0" % clears)
finally:
    lb.send_signal(signal.SIGTERM)
    lb.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)

#!/usr/bin/python3
"""regpick.py SOCKET SERVICE STOPFILE - a remote host's caller during a
rolling restart, for test_register_peers.sh.

Picks SERVICE through resolverd's socket without pause until STOPFILE
exists, and calls each picked instance for real: grpc.health.v1.Health/
Check on a fresh channel (a cached one could still be in its reconnect
backoff after the server came back, and fail for that reason alone), then
DONE (fail=1 when the call failed).  A second connection to the same socket
follows WATCH SERVICE, so it knows when resolverd saw an instance leave
(event "removed", or state DRAINING) and come back ("added").

At the end it prints, besides one line per failure or late pick:
    picks N failed F late L per_address A=N,...
where a late pick is one sent after resolverd had shown its instance's
removal (and before the instance was added again): a deregistration that
had become visible was not honoured."""
import json
import os
import socket
import sys
import threading
import time

import grpc

path, service, stopfile = sys.argv[1:4]
lock = threading.Lock()
# address -> list of (ms, "out"|"in") as the WATCH stream told them
changes = {}


def now_ms():
    return time.time() * 1000.0


def watcher():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(("WATCH %s\n" % service).encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.startswith(b"EVENT "):
                continue
            ev = json.loads(line[6:])
            t = now_ms()
            kind = None
            if ev.get("event") == "removed" or ev.get("state") == "DRAINING":
                kind = "out"
            elif ev.get("event") == "added":
                kind = "in"
            if kind:
                with lock:
                    changes.setdefault(ev["address"], []).append((t, kind))
                print("# %.1f watch %s %s %s" % (t, ev["address"], ev.get("event"), ev.get("state")),
                      flush=True)


def visible_out(address, t):
    """True when resolverd had shown `address` leaving before t (and not
    added again since)."""
    state = "in"
    with lock:
        for ts, kind in changes.get(address, []):
            if ts >= t:
                break
            state = kind
    return state == "out"


def health_check(address):
    req = b""  # HealthCheckRequest{service: ""}
    with grpc.insecure_channel(address) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        resp = call(req, timeout=2)
    if resp != b"\x08\x01":
        raise RuntimeError("status %r" % resp)


threading.Thread(target=watcher, daemon=True).start()
time.sleep(0.2)  # the WATCH is in place before the first pick
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.settimeout(10)
f = s.makefile("rwb")


def request(line):
    f.write((line + "\n").encode())
    f.flush()
    return f.readline().decode().rstrip("\n")


picks = failed = late = 0
per = {}
while not os.path.exists(stopfile):
    t0 = now_ms()
    reply = request("PICK " + service)
    picks += 1
    if not reply.startswith("OK "):
        failed += 1
        print("%.1f pick failed: %s" % (t0, reply), flush=True)
        continue
    pick = json.loads(reply[3:])
    addr = pick["address"]
    per[addr] = per.get(addr, 0) + 1
    if visible_out(addr, t0):
        late += 1
        print("%.1f late pick of %s (its removal was visible before)" % (t0, addr), flush=True)
    ok = True
    try:
        health_check(addr)
    except Exception as err:  # any failure of the call counts
        ok = False
        failed += 1
        print("%.1f call to %s failed: %s" % (t0, addr, str(err).splitlines()[0]), flush=True)
    done = request("DONE %s%s" % (pick["ticket"], "" if ok else " fail=1"))
    if not done.startswith("OK"):
        print("%.1f done failed: %s" % (t0, done), flush=True)
print("picks %d failed %d late %d per_address %s" % (
    picks, failed, late, ",".join("%s=%d" % kv for kv in sorted(per.items()))), flush=True)

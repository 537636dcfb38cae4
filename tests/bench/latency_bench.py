#!/usr/bin/python3
"""Calls through resolverd with one backend slower than the others, for
latency_bench.sh.

  latency_bench.py SOCKET SLOW_ADDRESS FAST_MS SLOW_MS CALLS WORKERS SERVICE...

WORKERS threads, each on its own connection, make CALLS calls per SERVICE
between them, the services taken in turn: PICK SERVICE, a "call" that takes
SLOW_MS on SLOW_ADDRESS and FAST_MS elsewhere (a sleep), then DONE with the
latency measured.  Prints "SERVICE PICKS SLOW_PICKS MEAN_LATENCY_MS" per
service."""
import json
import socket
import sys
import threading
import time

path, slow_addr = sys.argv[1], sys.argv[2]
fast_ms, slow_ms, calls, workers = (int(a) for a in sys.argv[3:7])
services = sys.argv[7:]
lock = threading.Lock()
stats = {s: [0, 0, 0.0] for s in services}
todo = [calls * len(services)]


def request(f, line):
    f.write((line + "\n").encode())
    f.flush()
    reply = f.readline().decode().rstrip("\n")
    if not reply.startswith("OK "):
        raise SystemExit("%s -> %s" % (line, reply))
    return json.loads(reply[3:])


def worker():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(30)
    f = s.makefile("rwb")
    while True:
        with lock:
            if todo[0] == 0:
                return
            todo[0] -= 1
            service = services[todo[0] % len(services)]
        start = time.monotonic()
        pick = request(f, "PICK " + service)
        time.sleep((slow_ms if pick["address"] == slow_addr else fast_ms) / 1000.0)
        took = (time.monotonic() - start) * 1000.0
        request(f, "DONE %d latency_ms=%d" % (pick["ticket"], round(took)))
        with lock:
            st = stats[service]
            st[0] += 1
            st[1] += pick["address"] == slow_addr
            st[2] += took


threads = [threading.Thread(target=worker) for _ in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for s in services:
    n, slow, total = stats[s]
    print("%s %d %d %.2f" % (s, n, slow, total / n if n else 0))

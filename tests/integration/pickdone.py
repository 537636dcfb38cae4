#!/usr/bin/python3
"""Picks and reports done over resolverd's socket, for test_metrics.sh.

  pickdone.py SOCKET SERVICE N [OPTION...]
      N times on one connection: PICK SERVICE, then DONE TICKET OPTION...
      (e.g. latency_ms=7 fail=1; none: a done without latency).  Prints the
      address of each pick, one a line; exits 1 at the first ERR reply."""
import json
import socket
import sys

path, service, n, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.settimeout(10)
f = s.makefile("rwb")


def request(line):
    f.write((line + "\n").encode())
    f.flush()
    reply = f.readline().decode().rstrip("\n")
    if not reply.startswith("OK "):
        sys.stderr.write("%s -> %s\n" % (line, reply))
        sys.exit(1)
    return json.loads(reply[3:])


for _ in range(n):
    pick = request("PICK " + service)
    request(" ".join(["DONE", str(pick["ticket"])] + options))
    print(pick["address"])

#!/usr/bin/python3
"""Ticket ownership and limits over resolverd's socket, for test_socket.sh.

  tickets.py SOCKET SERVICE owners     two connections of this uid: DONE of
                                       the other connection's ticket is
                                       denied, of this uid's detached one is not
  tickets.py SOCKET SERVICE hold FILE  picks a connection ticket, writes its
                                       id to FILE, holds the connection 5 s
  tickets.py SOCKET SERVICE detach N   N detached picks in batches; prints
                                       "ok K limit L other M" (reply counts)
  tickets.py SOCKET TICKET done        one DONE; prints the reply line
Prints one line per check ("ok NAME" / "bad NAME: detail"); exits 1 if any
check failed."""
import json
import socket
import sys
import time

path, arg, mode = sys.argv[1], sys.argv[2], sys.argv[3]
bad = []


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
    return s, s.makefile("rwb")


def request(f, line):
    f.write((line + "\n").encode())
    f.flush()
    return f.readline().decode().rstrip("\n")


def check(name, ok, detail=""):
    print(("ok %s" % name) if ok else ("bad %s: %s" % (name, detail)))
    if not ok:
        bad.append(name)


def ticket_of(reply):
    if not reply.startswith("OK "):
        raise SystemExit("pick failed: %s" % reply)
    return json.loads(reply[3:])["ticket"]


if mode == "owners":
    _, a = connect()
    _, b = connect()
    t = ticket_of(request(a, "PICK %s" % arg))
    r = request(b, "DONE %d" % t)
    check("DONE of another connection's ticket is denied", r.startswith("ERR denied "), r)
    r = request(a, "DONE %d" % t)
    check("DONE by the picking connection releases it", r.startswith("OK "), r)
    t = ticket_of(request(a, "PICK %s detach=1" % arg))
    r = request(b, "DONE %d" % t)
    check("DONE of this uid's detached ticket from another connection", r.startswith("OK "), r)
elif mode == "hold":
    _, a = connect()
    t = ticket_of(request(a, "PICK %s" % arg))
    with open(sys.argv[4], "w") as out:
        out.write("%d\n" % t)
    time.sleep(5)
elif mode == "detach":
    n = int(sys.argv[4])
    _, f = connect()
    counts = {"ok": 0, "limit": 0, "other": 0}
    batch = 2000
    for start in range(0, n, batch):
        k = min(batch, n - start)
        f.write(("PICK %s detach=1\n" % arg).encode() * k)
        f.flush()
        for _ in range(k):
            line = f.readline()
            if line.startswith(b"OK "):
                counts["ok"] += 1
            elif line.startswith(b"ERR limit "):
                counts["limit"] += 1
            else:
                counts["other"] += 1
    print("ok %d limit %d other %d" % (counts["ok"], counts["limit"], counts["other"]))
elif mode == "done":
    _, f = connect()
    print(request(f, "DONE %s" % arg))
sys.exit(1 if bad else 0)

#!/usr/bin/python3
"""Throws bad clients at resolverd while a well-behaved client keeps
picking; prints one line per check ("ok NAME" / "bad NAME: detail") and
exits non-zero if any check failed.  Usage: abuse.py SOCKET SERVICE"""
import os
import random
import socket
import sys
import threading
import time

path, service = sys.argv[1], sys.argv[2]
results = []


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(5)
    return s


def read_until_closed(s, limit=1 << 20):
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (socket.timeout, ConnectionResetError):
        return data, False
    return data, False


good_errors = []
good_count = [0]
stop = threading.Event()


def good_client():
    s = connect()
    f = s.makefile("rwb")
    while not stop.is_set():
        f.write(("PICK %s\n" % service).encode())
        f.flush()
        line = f.readline()
        if not line.startswith(b"OK "):
            good_errors.append(line)
        good_count[0] += 1
        time.sleep(0.005)
    s.close()


t = threading.Thread(target=good_client)
t.start()
started = time.time()

# 1. random bytes (newline-separated garbage): each gets an ERR, no crash.
s = connect()
random.seed(7)
junk = bytes(random.randrange(256) for _ in range(20000)).replace(b"\0", b"x")
s.sendall(junk + b"\nPING\n")
s.shutdown(socket.SHUT_WR)
data, closed = read_until_closed(s)
results.append(("random bytes answered with ERR lines", b"ERR " in data))
s.close()

# 2. a line longer than the limit: ERR, then disconnected.
s = connect()
s.sendall(b"PICK " + b"a" * 10000)
data, closed = read_until_closed(s)
results.append(("over-long line gets ERR and is disconnected",
                data.startswith(b"ERR protocol") and closed))
s.close()

# 3. half a line, then the client goes away.
s = connect()
s.sendall(b"PICK " + service.encode())
s.close()

# 4. thousands of pipelined requests on one connection, answered in order.
s = connect()
n = 5000
s.sendall(b"".join(b"PING\n" for _ in range(n)))
data = b""
while data.count(b"\n") < n:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
results.append(("5000 pipelined requests answered", data.count(b"OK ") == n))
s.close()

# 5. a client that never reads: the daemon stops it, not itself.
s = connect()
s.setblocking(False)
sent = 0
deadline = time.time() + 10
closed = False
while time.time() < deadline:
    try:
        sent += s.send(("METRICS\n" * 200).encode())
    except BlockingIOError:
        time.sleep(0.01)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
        break
results.append(("a client that never reads is disconnected", closed))
s.close()

# 6. many connections opened and dropped.
for _ in range(300):
    c = connect()
    c.sendall(b"STATUS\n")
    c.close()

# Keep the good client going a while after the abuse, then stop it.
time.sleep(max(0.0, 2.0 - (time.time() - started)))
stop.set()
t.join()
results.append(("the well-behaved client got every answer (%d picks)" % good_count[0],
                not good_errors and good_count[0] > 10))
failed = 0
for name, ok in results:
    print(("ok " if ok else "bad ") + name)
    failed += not ok
sys.exit(1 if failed else 0)

"""watchts.py SOCKET - resolverd's WATCH stream with a wall-clock timestamp:
one line per state change, "MS SERVICE ADDRESS STATE EVENT" (MS: ms since
the epoch, as the tests' now_ms).  Runs until the daemon closes the socket.
Used by test_subchannel_faults.sh and bench/subchannel_bench.sh."""
import json
import socket
import sys
import time

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"WATCH *\n")
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        if line.startswith(b"EVENT "):
            ev = json.loads(line[6:])
            print("%d %s %s %s %s" % (time.time() * 1000, ev.get("service"), ev.get("address"),
                                      ev.get("state"), ev.get("event")), flush=True)

#!/usr/bin/python3
"""Sends request lines from stdin to resolverd's socket, all at once
(pipelined), then prints one reply line per request, in order."""
import socket
import sys

path = sys.argv[1]
requests = [line.rstrip("\n") for line in sys.stdin if line.strip()]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall("".join(r + "\n" for r in requests).encode())
buf = b""
replies = 0
while replies < len(requests):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        print(line.decode())
        replies += 1
s.close()
sys.exit(0 if replies == len(requests) else 1)

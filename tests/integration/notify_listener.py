#!/usr/bin/python3
"""A stand-in for systemd's notify socket: binds a datagram socket at argv[1]
and appends every message it receives, one per line, to argv[2]."""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.path.exists(path):
    os.unlink(path)
s.bind(path)
while True:
    msg = s.recv(4096).decode(errors="replace").replace("\n", " ")
    with open(out, "a") as f:
        f.write(msg + "\n")

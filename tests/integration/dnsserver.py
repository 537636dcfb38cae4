#!/usr/bin/python3
"""dnsserver.py - a tiny UDP DNS server on loopback for the DNS tests.

    dnsserver.py --port-file FILE [--bind 127.0.0.1] [--port 0]
                 [--name NAME]... [--a ADDR] [--aaaa ADDR] [--ttl S]

Each --name gets, for type A, one record --a (default 127.0.0.1) and, for
type AAAA, one record --aaaa (default ::1), both with TTL --ttl (default 60);
any other type of such a name gets an empty NOERROR answer.  A query for
any other name is never answered (a server that does not reply: the client
must time out without blocking anything).  Every query is printed on stdout
as "MONOTONIC QUERY NAME TYPE ANSWERED|IGNORED", so a test can count them.
SIGTERM/SIGINT stop it.
"""

import argparse
import ipaddress
import os
import signal
import socket
import struct
import sys
import time

TYPES = {1: "A", 28: "AAAA"}


def log(msg):
    sys.stdout.write("%.3f %s\n" % (time.monotonic(), msg))
    sys.stdout.flush()


def parse_question(msg):
    """(id, flags, qname, qtype, end of the question) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1 or flags & 0x8000:
        return None
    i, labels = 12, []
    while True:
        if i >= len(msg):
            return None
        n = msg[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(msg):
            return None
        labels.append(msg[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(msg):
        return None
    qtype, _qclass = struct.unpack("!HH", msg[i:i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, i + 4


def answer(msg, q, args):
    qid, flags, _name, qtype, end = q
    records = []
    if qtype == 1:
        records.append((1, ipaddress.IPv4Address(args.a).packed))
    elif qtype == 28:
        records.append((28, ipaddress.IPv6Address(args.aaaa).packed))
    # QR, the opcode and RD of the query, RA; NOERROR.
    out = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0080, 1, len(records), 0, 0)
    out += msg[12:end]
    for rtype, rdata in records:
        # The name as a pointer to the question (offset 12).
        out += struct.pack("!HHHIH", 0xC00C, rtype, 1, args.ttl, len(rdata)) + rdata
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--name", action="append", default=[])
    ap.add_argument("--a", default="127.0.0.1")
    ap.add_argument("--aaaa", default="::1")
    ap.add_argument("--ttl", type=int, default=60)
    args = ap.parse_args()
    names = {n.lower().rstrip(".") for n in args.name}

    s = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.bind, args.port))
    port = s.getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    log("serving on %s:%d names %s" % (args.bind, port, sorted(names)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        msg, peer = s.recvfrom(4096)
        q = parse_question(msg)
        if not q:
            continue
        name, qtype = q[2], q[3]
        known = name in names
        log("QUERY %s %s %s" % (name, TYPES.get(qtype, str(qtype)), "ANSWERED" if known else "IGNORED"))
        if known:
            s.sendto(answer(msg, q, args), peer)


if __name__ == "__main__":
    sys.exit(main())

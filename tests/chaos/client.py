#!/usr/bin/python3
"""client.py - a chaos client: picks and reports done in a loop over
resolverd's socket, pipelined, and records every pick.

    client.py --socket PATH --services a,b,c --picks FILE --summary FILE
              --stop-file PATH [--batch 8] [--interval 0.03] [--seed N]
              [--fail-rate 0.05] [--hold-rate 0.1] [--abandon-rate 0.002]
              [--key-services ring]

Each round sends, in one write, a DONE for every ticket that is due (most
right after their pick, some held 0.2-2 s so that instances drain with
outstanding picks; a few with fail=1) followed by --batch PICKs of random
services, then reads exactly one reply per request.  Now and then
(--abandon-rate per round) it closes its connection while it holds tickets
and opens a new one: the daemon must release those tickets itself.  Every OK pick is
written to --picks as

    SEND_T RECV_T SERVICE ADDRESS TICKET

(wall clock, seconds: the decision was taken between the two).  When
--stop-file exists, the held tickets are reported done, every reply is read
and a JSON summary is written to --summary:

    {"requests": N, "answers": N, "picks_ok": N, "pick_errors": {"none_ready": N, ...},
     "dones": N, "done_ok": N, "done_errors": N, "unanswered": N, "reconnects": N,
     "abandoned": N, "held_at_exit": N, "problems": ["..."]}

Exit 0 iff every request got its answer and every DONE released its ticket.
"""

import argparse
import json
import os
import random
import socket
import sys
import time

REPLY_TIMEOUT_S = 10.0


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(REPLY_TIMEOUT_S)
        self.s.connect(path)
        self.buf = b""

    def exchange(self, lines):
        """Sends every line at once, returns (send_time, recv_time, replies);
        fewer replies than lines when the connection broke."""
        data = "".join(l + "\n" for l in lines).encode()
        t_send = time.time()
        self.s.sendall(data)
        replies = []
        while len(replies) < len(lines):
            while b"\n" in self.buf and len(replies) < len(lines):
                line, self.buf = self.buf.split(b"\n", 1)
                replies.append(line.decode("utf-8", "replace"))
            if len(replies) == len(lines):
                break
            chunk = self.s.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        return t_send, time.time(), replies

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--services", required=True)
    ap.add_argument("--key-services", default="", help="services picked with key=K")
    ap.add_argument("--picks", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--interval", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fail-rate", type=float, default=0.05)
    ap.add_argument("--hold-rate", type=float, default=0.1)
    ap.add_argument("--abandon-rate", type=float, default=0.002)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    services = [s for s in args.services.split(",") if s]
    keyed = set(s for s in args.key_services.split(",") if s)
    st = {"requests": 0, "answers": 0, "picks_ok": 0, "pick_errors": {}, "dones": 0,
          "done_ok": 0, "done_errors": 0, "unanswered": 0, "reconnects": 0,
          "abandoned": 0, "held_at_exit": 0, "problems": []}
    held = []  # (due_time, ticket, fail)
    now_done = []  # (ticket, fail)

    def problem(msg):
        if len(st["problems"]) < 20:
            st["problems"].append(msg)

    conn = None
    out = open(args.picks, "w", buffering=1 << 16)
    stopping = False
    while True:
        if not stopping and os.path.exists(args.stop_file):
            stopping = True
        if (not stopping and conn is not None and held and
                rng.random() < args.abandon_rate):
            # Gone without a word: the tickets go with the connection.
            st["abandoned"] += len(held) + len(now_done)
            held, now_done = [], []
            conn.close()
            conn = None
        now = time.time()
        due = [(t, f) for (d, t, f) in held if stopping or d <= now]
        held = [(d, t, f) for (d, t, f) in held if not (stopping or d <= now)]
        dones = now_done + due
        now_done = []
        picks = []
        if not stopping:
            for _ in range(args.batch):
                svc = rng.choice(services)
                picks.append((svc, "key=k%d" % rng.randrange(1000) if svc in keyed else ""))
        lines = []
        for t, f in dones:
            lines.append("DONE %d%s latency_ms=%d" % (t, " fail=1" if f else "", rng.randrange(50)))
        for svc, opt in picks:
            lines.append("PICK %s%s" % (svc, " " + opt if opt else ""))
        if not lines:
            break
        if conn is None:
            try:
                conn = Conn(args.socket)
            except OSError as e:
                problem("connect: %s" % e)
                if stopping:
                    st["unanswered"] += len(lines)
                    break
                time.sleep(0.2)
                st["reconnects"] += 1
                # Tickets of the lost connection were released by the daemon.
                continue
        st["requests"] += len(lines)
        try:
            t_send, t_recv, replies = conn.exchange(lines)
        except OSError as e:
            problem("exchange: %s" % e)
            t_send, t_recv, replies = time.time(), time.time(), []
        st["answers"] += len(replies)
        if len(replies) < len(lines):
            st["unanswered"] += len(lines) - len(replies)
            problem("%d of %d requests unanswered (connection broke)" %
                    (len(lines) - len(replies), len(lines)))
            conn.close()
            conn = None
            st["reconnects"] += 1
            # The daemon releases the tickets of a closed connection; ours
            # from this round are lost to us, which counts as a problem.
            if stopping:
                break
            continue
        nd = len(dones)
        for (t, f), rep in zip(dones, replies[:nd]):
            st["dones"] += 1
            if rep.startswith("OK "):
                try:
                    rel = json.loads(rep[3:]).get("released")
                except ValueError:
                    rel = None
                if rel == t:
                    st["done_ok"] += 1
                    continue
            st["done_errors"] += 1
            problem("DONE %d: %s" % (t, rep))
        for (svc, _), rep in zip(picks, replies[nd:]):
            if rep.startswith("OK "):
                try:
                    doc = json.loads(rep[3:])
                    addr, ticket = doc["address"], int(doc["ticket"])
                except (ValueError, KeyError, TypeError):
                    problem("bad pick reply: %s" % rep)
                    continue
                st["picks_ok"] += 1
                out.write("%.6f %.6f %s %s %d\n" % (t_send, t_recv, svc, addr, ticket))
                fail = rng.random() < args.fail_rate
                if rng.random() < args.hold_rate:
                    held.append((time.time() + rng.uniform(0.2, 2.0), ticket, fail))
                else:
                    now_done.append((ticket, fail))
            elif rep.startswith("ERR "):
                code = rep.split(" ", 2)[1]
                st["pick_errors"][code] = st["pick_errors"].get(code, 0) + 1
                if code not in ("no_instance", "none_ready"):
                    problem("PICK %s: %s" % (svc, rep))
            else:
                problem("PICK %s: unexpected reply %s" % (svc, rep))
        if stopping and not held and not now_done:
            break
        if not stopping:
            time.sleep(args.interval)
    st["held_at_exit"] = len(held) + len(now_done)
    if conn is not None:
        conn.close()
    out.close()
    with open(args.summary, "w") as f:
        json.dump(st, f)
        f.write("\n")
    ok = st["unanswered"] == 0 and st["done_errors"] == 0 and st["held_at_exit"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

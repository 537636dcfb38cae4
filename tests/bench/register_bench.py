#!/usr/bin/python3
"""register_bench.py - the measuring half of register_bench.sh (standard
library only).

  register_bench.py latency ENDPOINT REG_SOCKET VIEW_SOCKET SERVICE N
      N rounds, each against the same clock in this process:
        raw:      a put of SERVICE/rawNNNN -> host:port through the gateway,
                  timed to a raw gateway watch of SERVICE/ and to the "added"
                  EVENT on the viewing resolverd's WATCH SERVICE;
        register: REGISTER SERVICE host:port on the registering resolverd's
                  socket (go-zero form: grant, put under the lease), timed to
                  the same two;
      each followed by its delete / DEREGISTER and the "removed" event.
      Prints "raw_watch_p50 MS", "raw_view_p50", "reg_watch_p50",
      "reg_view_p50", the same for p99, and "samples N", "lost N".
  register_bench.py etcd_counters URL
      the counters of etcd's /metrics that count lease keepalives and
      requests: "renewed N", "granted N", and "METHOD N" for each gRPC method
      etcd handled (its gateway turns every HTTP request into one).
"""

import base64
import http.client
import json
import re
import socket
import sys
import threading
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(prefix):
    b = bytearray(prefix.encode())
    b[-1] += 1
    return base64.b64encode(bytes(b)).decode()


def conn_for(endpoint, timeout=30):
    u = urllib.parse.urlsplit(endpoint)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("%s: HTTP %d %s" % (path, r.status, data[:200]))
    return json.loads(data)


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Line:
    """One request line, one reply line, on a connection kept open."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def request(self, line):
        self.f.write((line + "\n").encode())
        self.f.flush()
        reply = self.f.readline().decode()
        if not reply.startswith("OK"):
            raise SystemExit("%s -> %s" % (line, reply.strip()))
        return reply


def cmd_latency(endpoint, reg_sock, view_sock, service, n):
    n = int(n)
    prefix = service + "/"
    seen = {}  # (kind, who, address) -> perf_counter
    cond = threading.Condition()

    def note(kind, who, addr):
        with cond:
            seen.setdefault((kind, who, addr), time.perf_counter())
            cond.notify_all()

    wc = conn_for(endpoint, timeout=None)
    wc.request("POST", "/v3/watch", json.dumps(
        {"create_request": {"key": b64(prefix), "range_end": prefix_end(prefix), "prev_kv": True}}),
        {"Content-Type": "application/json"})
    wr = wc.getresponse()

    def raw_reader():
        while True:
            line = wr.readline()
            if not line:
                return
            try:
                res = json.loads(line).get("result", {})
            except ValueError:
                continue
            for ev in res.get("events", []) or []:
                if ev.get("type") == "DELETE":
                    kv = ev.get("prev_kv", {})
                    note("del", "watch", base64.b64decode(kv.get("value", "")).decode())
                else:
                    note("put", "watch", base64.b64decode(ev["kv"].get("value", "")).decode())

    ds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ds.connect(view_sock)
    ds.sendall(("WATCH %s\n" % service).encode())
    dfile = ds.makefile("rb")
    first = dfile.readline()
    if not first.startswith(b"OK"):
        raise SystemExit("WATCH: %r" % first)

    def view_reader():
        for line in dfile:
            if not line.startswith(b"EVENT "):
                continue
            ev = json.loads(line[6:])
            if ev["event"] == "added":
                note("put", "view", ev["address"])
            elif ev["event"] == "removed":
                note("del", "view", ev["address"])

    threading.Thread(target=raw_reader, daemon=True).start()
    threading.Thread(target=view_reader, daemon=True).start()
    time.sleep(0.3)  # both watches established

    pc = conn_for(endpoint)
    reg = Line(reg_sock)
    lat = {}
    lost = [0]

    def wait(kind, addr, t0, label):
        deadline = time.perf_counter() + 5
        with cond:
            while not all((kind, who, addr) in seen for who in ("watch", "view")):
                left = deadline - time.perf_counter()
                if left <= 0:
                    lost[0] += 1
                    return
                cond.wait(left)
            for who in ("watch", "view"):
                lat.setdefault("%s_%s" % (label, who), []).append(
                    (seen[(kind, who, addr)] - t0) * 1000)

    for i in range(n):
        # Addresses nobody listens on (the viewer's connects fail fast):
        # distinct per round, so every event is new.
        raw_addr = "127.0.%d.%d:%d" % (50 + i // 250, 1 + i % 250, 7000)
        reg_addr = "127.0.%d.%d:%d" % (50 + i // 250, 1 + i % 250, 7001)
        key = "%sraw%05d" % (prefix, i)
        t0 = time.perf_counter()
        post(pc, "/v3/kv/put", {"key": b64(key), "value": b64(raw_addr)})
        wait("put", raw_addr, t0, "raw")
        post(pc, "/v3/kv/deleterange", {"key": b64(key)})
        wait("del", raw_addr, time.perf_counter(), "rawdel")
        t0 = time.perf_counter()
        reg.request("REGISTER %s %s ttl_ms=10000" % (service, reg_addr))
        wait("put", reg_addr, t0, "reg")
        reg.request("DEREGISTER %s %s" % (service, reg_addr))
        wait("del", reg_addr, time.perf_counter(), "regdel")
    for name in ("raw_watch", "raw_view", "reg_watch", "reg_view"):
        v = lat.get(name, [])
        print("%s_p50 %.3f" % (name, pct(v, 50)))
        print("%s_p99 %.3f" % (name, pct(v, 99)))
    print("samples %d" % len(lat.get("reg_view", [])))
    print("lost %d" % lost[0])


def cmd_etcd_counters(url):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    methods = {}
    for line in text.splitlines():
        m = re.match(r'grpc_server_handled_total\{.*grpc_method="([A-Za-z]+)".*\} ([0-9.e+]+)$', line)
        if m:
            methods[m.group(1)] = methods.get(m.group(1), 0) + float(m.group(2))
        m = re.match(r"etcd_debugging_lease_(renewed|granted)_total ([0-9.e+]+)$", line)
        if m:
            print("%s %d" % (m.group(1), float(m.group(2))))
    for k, v in sorted(methods.items()):
        print("%s %d" % (k, v))


def main():
    cmds = {"latency": cmd_latency, "etcd_counters": cmd_etcd_counters}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()

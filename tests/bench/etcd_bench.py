#!/usr/bin/python3
"""etcd_bench.py - the measuring half of etcd_bench.sh (standard library only).

  etcd_bench.py load ENDPOINT PREFIX COUNT ADDRESSES
      puts COUNT keys PREFIX%07d through the gateway in transactions of 128
      puts; key i gets address i % ADDRESSES, spread over 127.0.x.y:port
      (nobody listens there).  Prints "load SECONDS".
  etcd_bench.py range ENDPOINT PREFIX [REPEAT]
      a raw range of the prefix through the gateway, body read and JSON
      decoded (what resolverd has to do too); best of REPEAT (default 3).
      Prints "range SECONDS KEYS BYTES" and "range_fetch SECONDS" (body only).
  etcd_bench.py sync SOCKET SERVICE INSTANCES TIMEOUT [START_EPOCH]
      polls SERVICES on resolverd's socket every 10 ms until SERVICE is
      synced with INSTANCES instances; prints "sync SECONDS" counted from
      START_EPOCH (wall clock seconds, e.g. bash's $EPOCHREALTIME taken just
      before resolverd was started), else from the start of this command.
  etcd_bench.py latency ENDPOINT SOCKET SERVICE PREFIX N
      N times: put a new key (a fresh address) through the gateway, and time
      when it shows up on a raw gateway watch of PREFIX and as an "added"
      EVENT on resolverd's WATCH SERVICE, both against the same clock; then
      delete it and time the "removed" event likewise.  Prints percentiles:
      "put_raw_p50 MS", "put_daemon_p50 MS", ... and "*_p99".
"""

import base64
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def prefix_end(prefix):
    p = bytearray(prefix.encode())
    p[-1] += 1
    return bytes(p)


def conn_for(endpoint, timeout=30):
    u = urllib.parse.urlsplit(endpoint)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("%s: HTTP %d %s" % (path, r.status, data[:200]))
    return data


def address(i):
    # 127.0.x.y:port, distinct for i < 64k * 250; ports 20000..59999.
    return "127.%d.%d.%d:%d" % ((i // 40000) // 250 % 250, (i // 40000) % 250 + 1, 1 + i % 200,
                                20000 + (i // 200) % 200)


def cmd_load(endpoint, prefix, count, addresses):
    count, addresses = int(count), int(addresses)
    c = conn_for(endpoint)
    start = time.perf_counter()
    batch = []
    for i in range(count):
        batch.append({"request_put": {"key": b64("%s%07d" % (prefix, i)),
                                      "value": b64(address(i % addresses))}})
        if len(batch) == 128 or i == count - 1:
            post(c, "/v3/kv/txn", {"success": batch})
            batch = []
    print("load %.3f" % (time.perf_counter() - start))


def cmd_range(endpoint, prefix, repeat="3"):
    best = best_fetch = None
    for _ in range(int(repeat)):
        c = conn_for(endpoint)
        start = time.perf_counter()
        data = post(c, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        fetched = time.perf_counter() - start
        doc = json.loads(data)
        keys = [(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")))
                for kv in doc.get("kvs", [])]
        took = time.perf_counter() - start
        c.close()
        if best is None or took < best:
            best, n, size = took, len(keys), len(data)
        if best_fetch is None or fetched < best_fetch:
            best_fetch = fetched
    print("range %.3f %d %d" % (best, n, size))
    print("range_fetch %.3f" % best_fetch)


def sock_request(path, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall((line + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
    s.close()
    return buf.decode()


def cmd_sync(sock, service, instances, timeout, start_epoch=None):
    instances, timeout = int(instances), float(timeout)
    start = time.perf_counter()
    if start_epoch:
        start -= time.time() - float(start_epoch)
    while time.perf_counter() - start < timeout:
        try:
            reply = sock_request(sock, "SERVICES")
        except OSError:
            time.sleep(0.01)
            continue
        if reply.startswith("OK "):
            for s in json.loads(reply[3:]):
                if s["name"] == service and s["synced"] and s["instances"] >= instances:
                    print("sync %.3f" % (time.perf_counter() - start))
                    return
        time.sleep(0.01)
    print("sync timeout")


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def cmd_latency(endpoint, sock, service, prefix, n):
    n = int(n)
    seen = {}  # (kind, who, address) -> perf_counter
    cond = threading.Condition()

    def note(kind, who, addr):
        with cond:
            seen.setdefault((kind, who, addr), time.perf_counter())
            cond.notify_all()

    # Raw gateway watch of the prefix.
    wc = conn_for(endpoint, timeout=None)
    wc.request("POST", "/v3/watch", json.dumps(
        {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}}),
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
                kv = ev.get("kv", {})
                if ev.get("type") == "DELETE":
                    note("del", "raw", base64.b64decode(kv["key"]).decode())
                else:
                    note("put", "raw", base64.b64decode(kv.get("value", "")).decode())

    # resolverd's WATCH over its socket.
    ds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ds.connect(sock)
    ds.sendall(("WATCH %s\n" % service).encode())
    dfile = ds.makefile("rb")
    first = dfile.readline()
    if not first.startswith(b"OK"):
        raise SystemExit("WATCH: %r" % first)

    def daemon_reader():
        for line in dfile:
            if not line.startswith(b"EVENT "):
                continue
            ev = json.loads(line[6:])
            if ev["event"] == "added":
                note("put", "daemon", ev["address"])
            elif ev["event"] == "removed":
                note("del", "daemon", ev["address"])

    threading.Thread(target=raw_reader, daemon=True).start()
    threading.Thread(target=daemon_reader, daemon=True).start()
    time.sleep(0.3)  # both watches established

    pc = conn_for(endpoint)
    lat = {("put", "raw"): [], ("put", "daemon"): [], ("del", "raw"): [], ("del", "daemon"): []}

    def wait_both(kind, raw_id, daemon_id, t0):
        deadline = time.perf_counter() + 5
        with cond:
            while not (((kind, "raw", raw_id) in seen) and ((kind, "daemon", daemon_id) in seen)):
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                cond.wait(left)
            lat[(kind, "raw")].append((seen[(kind, "raw", raw_id)] - t0) * 1000)
            lat[(kind, "daemon")].append((seen[(kind, "daemon", daemon_id)] - t0) * 1000)
        return True

    lost = 0
    for i in range(n):
        key = "%slat%06d" % (prefix, i)
        addr = address(3000000 + i)
        t0 = time.perf_counter()
        post(pc, "/v3/kv/put", {"key": b64(key), "value": b64(addr)})
        if not wait_both("put", addr, addr, t0):
            lost += 1
        t0 = time.perf_counter()
        post(pc, "/v3/kv/deleterange", {"key": b64(key)})
        if not wait_both("del", key, addr, t0):
            lost += 1
    for (kind, who), v in sorted(lat.items()):
        print("%s_%s_p50 %.3f" % (kind, who, pct(v, 50)))
        print("%s_%s_p99 %.3f" % (kind, who, pct(v, 99)))
    print("latency_samples %d" % len(lat[("put", "raw")]))
    print("latency_lost %d" % lost)


def main():
    cmds = {"load": cmd_load, "range": cmd_range, "sync": cmd_sync, "latency": cmd_latency}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()

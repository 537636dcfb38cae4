"""putvisible.py SOCKET ENDPOINT N PREFIX... [--tls CA CERT KEY] [--delete]

Put -> visible through resolverd: N times, put a new key under one of the
PREFIXes (round robin; value a fresh go-zero address 127.0.x.y:port that
nobody listens on) through etcd's JSON gateway at ENDPOINT (http or https;
with --tls a private CA and a client certificate), and time it until
resolverd's WATCH * stream reports the address "added".  With --delete each
key is deleted again and timed until "removed".  Prints
"put_p50 MS", "put_p99 MS", "put_max MS" (and del_*), "lost N" (no event
within 5 s).  Used by test_etcd_conns.sh and bench/etcd_conns_bench.sh.
"""
import base64
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse


def main():
    args = sys.argv[1:]
    tls = None
    delete = False
    if "--delete" in args:
        args.remove("--delete")
        delete = True
    if "--tls" in args:
        i = args.index("--tls")
        tls = args[i + 1:i + 4]
        del args[i:i + 4]
    sock_path, endpoint, n, prefixes = args[0], args[1], int(args[2]), args[3:]
    u = urllib.parse.urlsplit(endpoint)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=tls[0])
        ctx.load_cert_chain(tls[1], tls[2])
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=10, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)

    seen = {}
    cond = threading.Condition()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(b"WATCH *\n")

    def reader():
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.startswith(b"EVENT "):
                    continue
                ev = json.loads(line[6:])
                if ev.get("event") in ("added", "removed"):
                    with cond:
                        seen[(ev["event"], ev.get("address"))] = time.monotonic()
                        cond.notify_all()

    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.3)  # the WATCH is registered

    def post(path, body):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("%s: HTTP %d" % (path, r.status))

    def wait(kind, addr, t0):
        deadline = t0 + 5
        with cond:
            while (kind, addr) not in seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                cond.wait(left)
            return (seen[(kind, addr)] - t0) * 1000

    b64 = lambda x: base64.b64encode(x.encode()).decode()
    lat = {"put": [], "del": []}
    lost = 0
    base = int(time.time()) % 200
    for i in range(n):
        prefix = prefixes[i % len(prefixes)]
        addr = "127.%d.%d.%d:%d" % (base, i // 250 % 250, i % 250 + 1, 20000 + i % 30000)
        key = "%spv-%d-%d" % (prefix, base, i)
        t0 = time.monotonic()
        post("/v3/kv/put", {"key": b64(key), "value": b64(addr)})
        ms = wait("added", addr, t0)
        if ms is None:
            lost += 1
        else:
            lat["put"].append(ms)
        if delete:
            t0 = time.monotonic()
            post("/v3/kv/deleterange", {"key": b64(key)})
            ms = wait("removed", addr, t0)
            if ms is None:
                lost += 1
            else:
                lat["del"].append(ms)
    for kind, v in lat.items():
        if not v:
            continue
        v.sort()
        print("%s_p50 %.2f" % (kind, v[len(v) // 2]))
        print("%s_p99 %.2f" % (kind, v[min(len(v) - 1, int(len(v) * 0.99))]))
        print("%s_max %.2f" % (kind, v[-1]))
    print("lost %d" % lost)


main()

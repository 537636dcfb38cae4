#!/usr/bin/python3
"""views.py - does resolverd's instance table equal etcd's view?

    views.py --resolverctl PATH --socket PATH --endpoints URL,... \
             --services NAME=PREFIX,... [--ready] [--quiet]

For every service: the set of addresses `resolverctl instances --json`
lists (DRAINING ones excluded: they left etcd and are waiting for their
picks) must equal the set of addresses decoded from the values under the
service's prefix in etcd (a range on the first endpoint that answers).
With --ready every listed instance must also be READY.  Exit 0 when all
agree; else prints the differences and exits 1.
"""

import argparse
import base64
import http.client
import json
import subprocess
import sys
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from check import decode_addr  # noqa: E402


def prefix_end(p):
    b = bytearray(p.encode())
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\0"
    b[-1] += 1
    return bytes(b)


def etcd_range(endpoints, prefix):
    last = None
    for ep in endpoints:
        u = urllib.parse.urlparse(ep)
        c = http.client.HTTPConnection(u.hostname, u.port or 2379, timeout=3)
        try:
            body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                               "range_end": base64.b64encode(prefix_end(prefix)).decode()})
            c.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                last = "HTTP %d" % r.status
                continue
            doc = json.loads(data)
            return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                    for kv in doc.get("kvs", [])}
        except (OSError, ValueError, http.client.HTTPException) as e:
            last = str(e)
        finally:
            c.close()
    raise OSError("no etcd endpoint answered: %s" % last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolverctl", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--services", required=True)
    ap.add_argument("--ready", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    endpoints = [e for e in args.endpoints.split(",") if e]
    bad = 0
    lines = []
    for item in args.services.split(","):
        name, _, prefix = item.partition("=")
        try:
            kvs = etcd_range(endpoints, prefix)
        except OSError as e:
            print("%s: %s" % (name, e))
            return 1
        want = set(a for a in (decode_addr(v) for v in kvs.values()) if a)
        p = subprocess.run([args.resolverctl, "-s", args.socket, "instances", "--json", name],
                           capture_output=True, text=True)
        if p.returncode == 3:
            insts = []
        elif p.returncode != 0:
            print("%s: resolverctl exit %d: %s" % (name, p.returncode, p.stderr.strip()))
            return 1
        else:
            insts = json.loads(p.stdout)
        have = set(i["address"] for i in insts if i["state"] != "DRAINING")
        draining = sorted(i["address"] for i in insts if i["state"] == "DRAINING")
        not_ready = sorted("%s=%s" % (i["address"], i["state"]) for i in insts
                           if i["state"] not in ("READY", "DRAINING"))
        ok = have == want and (not args.ready or not not_ready)
        lines.append("%s: etcd %d, resolverd %d%s%s%s" % (
            name, len(want), len(have),
            "" if have == want else " (only in etcd: %s; only in resolverd: %s)" % (
                " ".join(sorted(want - have)) or "-", " ".join(sorted(have - want)) or "-"),
            " draining: %s" % " ".join(draining) if draining else "",
            " not READY: %s" % " ".join(not_ready) if not_ready else ""))
        bad += not ok
    if not args.quiet or bad:
        print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

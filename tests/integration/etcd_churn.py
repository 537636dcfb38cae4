#!/usr/bin/python3
"""etcd_churn.py - puts, deletes and leases keys through etcd's JSON gateway
for a while, failing over between the members it is given.

    etcd_churn.py --endpoints URL[,URL...] --prefix P [--prefix P...]
                  --value V [--value V...] [--keys N] [--seconds S]
                  [--rate OPS_PER_S] [--lease-ttl S] [--seed N]

Each operation picks a prefix, a key PREFIX kN (N < --keys) and a value at
random, then: put (50 %), delete (20 %), delete a range of one to four keys
(10 %: several events at one revision), or put one to three keys under a
fresh lease of --lease-ttl seconds (20 %: they expire at one revision).
Keys sort as strings: use --keys 10 or less for the ranges to be contiguous.  A request that fails (a member killed, an
election) is retried once on the next member and otherwise counted and
skipped: the test compares against what etcd holds at the end, not against
what this script meant to write.  Prints one summary line at the end:
"churn: N operations (...), F failed, E failovers".
Standard library only.
"""

import argparse
import base64
import http.client
import json
import random
import sys
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Gateway:
    def __init__(self, endpoints, timeout):
        self.endpoints = [urllib.parse.urlsplit(u) for u in endpoints]
        self.current = 0
        self.timeout = timeout
        self.conn = None
        self.failovers = 0

    def _connect(self):
        u = self.endpoints[self.current]
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=self.timeout)

    def _next(self):
        if self.conn:
            self.conn.close()
        self.conn = None
        self.current = (self.current + 1) % len(self.endpoints)
        self.failovers += 1

    def post(self, path, body):
        """Returns the decoded answer, or None after two failed tries."""
        for _ in range(2):
            try:
                if self.conn is None:
                    self._connect()
                self.conn.request("POST", path, json.dumps(body),
                                  {"Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                if r.status == 200:
                    return json.loads(data)
                # 5xx: no leader, timeouts during an election.
                self._next()
            except (OSError, http.client.HTTPException, ValueError):
                self._next()
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--prefix", action="append", required=True)
    ap.add_argument("--value", action="append", required=True)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=100, help="operations per second (at most)")
    ap.add_argument("--lease-ttl", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    gw = Gateway(a.endpoints.split(","), timeout=2.0)
    n = puts = dels = range_dels = leased = failed = 0
    start = time.monotonic()
    deadline = start + a.seconds
    while time.monotonic() < deadline:
        n += 1
        key = "%sk%d" % (rng.choice(a.prefix), rng.randrange(a.keys))
        value = rng.choice(a.value)
        op = rng.randrange(100)
        if op < 50:
            ok = gw.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}) is not None
            puts += 1
        elif op < 70:
            ok = gw.post("/v3/kv/deleterange", {"key": b64(key)}) is not None
            dels += 1
        elif op < 80:
            # Several keys gone at one revision: kA .. kB-1 of one prefix.
            prefix = rng.choice(a.prefix)
            lo = rng.randrange(a.keys)
            hi = min(a.keys, lo + 1 + rng.randrange(4))
            ok = gw.post("/v3/kv/deleterange", {"key": b64("%sk%d" % (prefix, lo)),
                                                "range_end": b64("%sk%d" % (prefix, hi))
                                                }) is not None
            range_dels += 1
        else:
            # A lease with one to three keys: they expire at one revision.
            g = gw.post("/v3/lease/grant", {"TTL": str(a.lease_ttl)})
            ok = g is not None and "ID" in g
            for _ in range(1 + rng.randrange(3)):
                if not ok:
                    break
                key = "%sk%d" % (rng.choice(a.prefix), rng.randrange(a.keys))
                ok = gw.post("/v3/kv/put", {"key": b64(key), "value": b64(rng.choice(a.value)),
                                            "lease": g["ID"]}) is not None
            leased += 1
        if not ok:
            failed += 1
        # Pace: at most --rate operations per second on average.
        ahead = start + n / a.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print("churn: %d operations (%d puts, %d deletes, %d range deletes, %d leases), %d failed, "
          "%d failovers" % (n, puts, dels, range_dels, leased, failed, gw.failovers))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

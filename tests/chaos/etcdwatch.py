#!/usr/bin/python3
"""etcdwatch.py - the chaos scenario's ground truth: what etcd held, and when.

    etcdwatch.py --endpoints URL[,URL...] --out FILE

Lists the whole keyspace, then watches it from the next revision through
etcd's JSON gateway, and appends one JSON line per change to FILE:

    {"t": 1700000000.123456, "rev": 42, "type": "PUT"|"DELETE",
     "key": "svc/1", "value": "10.0.0.1:9001", "resync": false}

"t" is the wall clock when the watcher read the event: an upper bound of
the moment etcd committed it (the chaos checker also uses the driver's own
times).  The first lines (initial listing) have "initial": true.

A member that dies or a stream that breaks: the watch resumes on the next
endpoint from the last revision seen + 1.  If that revision was compacted,
the keyspace is listed again and the difference is written as events with
"resync": true (their time is when the difference was seen).  SIGTERM ends
it (exit 0).  Standard library only.
"""

import argparse
import base64
import http.client
import json
import signal
import sys
import time
import urllib.parse

ALL = base64.b64encode(b"\0").decode()  # key "\0" + range_end "\0": every key


def b64d(s):
    return base64.b64decode(s or "").decode("utf-8", "replace")


class Watcher:
    def __init__(self, endpoints, out):
        self.endpoints = endpoints
        self.cur = 0
        self.out = out
        self.state = {}  # key -> value
        self.rev = 0  # last revision applied

    def log(self, msg):
        sys.stderr.write("%.3f etcdwatch: %s\n" % (time.time(), msg))
        sys.stderr.flush()

    def conn(self, timeout):
        u = urllib.parse.urlparse(self.endpoints[self.cur])
        return http.client.HTTPConnection(u.hostname, u.port or 2379, timeout=timeout)

    def rotate(self):
        self.cur = (self.cur + 1) % len(self.endpoints)

    def emit(self, t, rev, typ, key, value, **extra):
        rec = {"t": round(t, 6), "rev": rev, "type": typ, "key": key, "value": value}
        rec.update(extra)
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.out.flush()

    def range_all(self):
        c = self.conn(3)
        try:
            body = json.dumps({"key": ALL, "range_end": ALL})
            c.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise OSError("range: HTTP %d %s" % (r.status, data[:200]))
            doc = json.loads(data)
        finally:
            c.close()
        rev = int(doc["header"]["revision"])
        kvs = {b64d(kv["key"]): b64d(kv.get("value")) for kv in doc.get("kvs", [])}
        return rev, kvs

    def resync(self, initial):
        rev, kvs = self.range_all()
        t = time.time()
        for k, v in sorted(kvs.items()):
            if self.state.get(k) != v:
                self.emit(t, rev, "PUT", k, v, resync=not initial, initial=initial)
        for k in sorted(set(self.state) - set(kvs)):
            self.emit(t, rev, "DELETE", k, "", resync=True)
        self.state = kvs
        self.rev = rev

    def watch_once(self):
        """One watch stream from self.rev + 1, until it breaks.  Returns
        "compacted" when the start revision is gone."""
        c = self.conn(None)
        try:
            body = json.dumps({"create_request": {"key": ALL, "range_end": ALL,
                                                  "start_revision": str(self.rev + 1),
                                                  "progress_notify": True}})
            c.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise OSError("watch: HTTP %d" % r.status)
            # A dead member must not hold us: progress notifications come
            # every 10 min by default, so the socket timeout only catches a
            # silent peer we would otherwise never leave.
            c.sock.settimeout(None)
            while True:
                line = r.readline()
                if not line:
                    raise OSError("watch stream ended")
                line = line.strip()
                if not line:
                    continue
                doc = json.loads(line)
                if "error" in doc:
                    raise OSError("watch error: %s" % doc["error"])
                res = doc.get("result", {})
                if res.get("canceled"):
                    if int(res.get("compact_revision", 0) or 0) > 0:
                        return "compacted"
                    raise OSError("watch canceled: %s" % res.get("cancel_reason", ""))
                if int(res.get("compact_revision", 0) or 0) > 0:
                    return "compacted"
                t = time.time()
                for ev in res.get("events", []) or []:
                    kv = ev.get("kv", {})
                    key = b64d(kv.get("key"))
                    # One revision may carry several events (a lease that
                    # expires deletes all its keys at once): no dedup on
                    # rev, the stream starts after the last one applied.
                    rev = int(kv.get("mod_revision", 0) or 0)
                    if ev.get("type") == "DELETE":
                        self.state.pop(key, None)
                        self.emit(t, rev, "DELETE", key, "")
                    else:
                        val = b64d(kv.get("value"))
                        self.state[key] = val
                        self.emit(t, rev, "PUT", key, val)
                    self.rev = max(self.rev, rev)
                hrev = int(res.get("header", {}).get("revision", 0) or 0)
                if not res.get("events") and hrev > self.rev and not res.get("created"):
                    # A progress notification: nothing below hrev is missing.
                    self.rev = hrev
        finally:
            c.close()

    def run(self):
        while True:
            try:
                self.resync(initial=True)
                break
            except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
                self.log("initial listing on %s: %s" % (self.endpoints[self.cur], e))
                self.rotate()
                time.sleep(0.1)
        self.log("listed %d keys at revision %d" % (len(self.state), self.rev))
        while True:
            try:
                if self.watch_once() == "compacted":
                    self.log("revision %d compacted: listing again" % (self.rev + 1))
                    self.resync(initial=False)
                    continue
            except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
                self.log("watch on %s: %s" % (self.endpoints[self.cur], e))
            self.rotate()
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(args.out, "a") as out:
        try:
            Watcher([e.strip() for e in args.endpoints.split(",") if e.strip()], out).run()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

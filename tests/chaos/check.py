#!/usr/bin/python3
"""check.py - the chaos scenario's pick invariants, from the logs.

    check.py --watch WATCH.jsonl --actions ACTIONS.log --services SPEC
             --remove-budget S --dead-budget S --results FILE PICKS...

SPEC: NAME=PREFIX,NAME=PREFIX,...  (a key belongs to the service whose
prefix it starts with).  Values are decoded the way resolverd does for the
formats the scenario writes: "host:port", {"address":..} (native, Kitex),
{"Addr":..} (etcd naming), {"endpoints":["grpc://.."]} (Kratos).

Ground truth:
 - an instance (service, address) is present from each key's put to its
   delete.  A put counts from the moment the driver started `etcdctl put`
   (nothing can see it earlier); a delete from the earliest of the moment
   `etcdctl del` returned and the moment the watcher (etcdwatch.py) saw it
   (both are after the commit).  Lease expiries come from the watcher.
 - a backend is dead from the moment its fault was in effect (kill sent,
   proxy frozen, packets dropped) until the moment the driver started to
   undo it.
A pick was sent at SEND_T and answered at RECV_T, so the daemon decided
between the two.  Violations, counted only when certain:
 - unknown: no key of the service held the address before RECV_T;
 - removed: every key that held it was deleted more than --remove-budget s
   before SEND_T;
 - dead: its backend had been dead for more than --dead-budget s at
   SEND_T and was still dead at RECV_T.

Writes one line per invariant to --results ("ok|fail<TAB>description<TAB>
detail") and a report on stdout.
"""

import argparse
import bisect
import json
import sys


def decode_addr(value):
    v = value.strip()
    if v.startswith("{"):
        try:
            doc = json.loads(v)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        if isinstance(doc.get("address"), str):
            return doc["address"]
        if isinstance(doc.get("Addr"), str):
            return doc["Addr"] if doc.get("Op", 0) == 0 else None
        for ep in doc.get("endpoints") or []:
            if isinstance(ep, str) and ep.startswith("grpc://"):
                return ep[len("grpc://"):]
        return None
    return v or None


def parse_actions(path):
    """Yields (t, kind, {k: v})."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            kv = {}
            for p in parts[2:]:
                k, _, v = p.partition("=")
                kv[k] = v
            yield float(parts[0]), parts[1], kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--watch", required=True)
    ap.add_argument("--actions", required=True)
    ap.add_argument("--services", required=True)
    ap.add_argument("--remove-budget", type=float, required=True)
    ap.add_argument("--dead-budget", type=float, required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("picks", nargs="+")
    args = ap.parse_args()

    prefixes = []
    for item in args.services.split(","):
        name, _, prefix = item.partition("=")
        prefixes.append((prefix, name))
    prefixes.sort(key=lambda p: -len(p[0]))

    def service_of(key):
        for prefix, name in prefixes:
            if key.startswith(prefix):
                return name
        return None

    # ---- driver actions ----
    put_t0 = {}  # key -> earliest start of an etcdctl put of it
    del_t = {}  # key -> when a successful etcdctl del returned
    dead = {}  # addr -> [[start, end], ...]
    for t, kind, kv in parse_actions(args.actions):
        if kind in ("put", "lease_put") and "key" in kv:
            t0 = float(kv.get("t0", t))
            put_t0[kv["key"]] = min(put_t0.get(kv["key"], t0), t0)
        elif kind == "del" and kv.get("ok") == "1":
            del_t.setdefault(kv["key"], t)
        elif kind == "dead":
            iv = dead.setdefault(kv["addr"], [])
            if iv and iv[-1][1] is None:
                continue  # already dead (should not happen: the driver avoids it)
            iv.append([t, None])
        elif kind == "alive":
            iv = dead.get(kv["addr"])
            if iv and iv[-1][1] is None:
                iv[-1][1] = t

    # ---- etcd's view over time, one interval per key ----
    intervals = {}  # (svc, addr) -> [[start, end_or_None, key], ...]
    open_key = {}  # key -> interval (list)
    n_events = 0
    with open(args.watch) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            n_events += 1
            key = ev["key"]
            svc = service_of(key)
            if svc is None:
                continue
            if ev["type"] == "PUT":
                addr = decode_addr(ev["value"])
                old = open_key.pop(key, None)
                if old is not None:
                    old[1] = ev["t"]
                if addr is None:
                    continue
                start = min(ev["t"], put_t0.get(key, ev["t"]))
                iv = [start, None, key]
                intervals.setdefault((svc, addr), []).append(iv)
                open_key[key] = iv
            else:
                iv = open_key.pop(key, None)
                if iv is not None:
                    iv[1] = min(ev["t"], del_t.get(key, ev["t"]))

    # ---- the picks ----
    counts = {"picks": 0, "unknown": 0, "removed": 0, "dead": 0}
    examples = {"unknown": [], "removed": [], "dead": []}
    per_svc = {}
    # Worst lag seen between a removal / death and a pick after it.
    worst_removed = (0.0, None)
    worst_dead = (0.0, None)
    dead_starts = {a: [iv[0] for iv in ivs] for a, ivs in dead.items()}
    for path in args.picks:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 5:
                    continue
                t_send, t_recv = float(parts[0]), float(parts[1])
                svc, addr = parts[2], parts[3]
                counts["picks"] += 1
                per_svc[svc] = per_svc.get(svc, 0) + 1
                ivs = intervals.get((svc, addr), [])
                started = [iv for iv in ivs if iv[0] <= t_recv]
                if not started:
                    counts["unknown"] += 1
                    if len(examples["unknown"]) < args.examples:
                        examples["unknown"].append("%s %s at %.3f" % (svc, addr, t_send))
                elif all(iv[1] is not None for iv in started):
                    last_end = max(iv[1] for iv in started)
                    lag = t_send - last_end
                    if lag > worst_removed[0]:
                        worst_removed = (lag, "%s %s" % (svc, addr))
                    if lag > args.remove_budget:
                        counts["removed"] += 1
                        if len(examples["removed"]) < args.examples:
                            keys = ",".join(iv[2] for iv in started)
                            examples["removed"].append(
                                "%s %s picked at %.3f (sent), %.3f s after its last key (%s) left "
                                "etcd at %.3f" % (svc, addr, t_send, lag, keys, last_end))
                starts = dead_starts.get(addr)
                if starts:
                    i = bisect.bisect_right(starts, t_send) - 1
                    if i >= 0:
                        ds, de = dead[addr][i]
                        if de is None or t_recv < de:
                            lag = t_send - ds
                            if lag > worst_dead[0]:
                                worst_dead = (lag, "%s %s" % (svc, addr))
                            if lag > args.dead_budget:
                                counts["dead"] += 1
                                if len(examples["dead"]) < args.examples:
                                    examples["dead"].append(
                                        "%s %s picked at %.3f (sent), %.3f s after its backend "
                                        "died at %.3f" % (svc, addr, t_send, lag, ds))

    n_keys = sum(len(v) for v in intervals.values())
    n_removed = sum(1 for v in intervals.values() for iv in v if iv[1] is not None)
    n_dead = sum(len(v) for v in dead.values())
    print("# picks checked: %d (%s)" % (counts["picks"], ", ".join(
        "%s %d" % kv for kv in sorted(per_svc.items()))))
    print("# etcd: %d watch events, %d registrations, %d of them removed; %d backend faults" %
          (n_events, n_keys, n_removed, n_dead))
    print("# longest removal -> pick lag: %.3f s (%s); longest death -> pick lag: %.3f s (%s)" %
          (worst_removed[0], worst_removed[1] or "-", worst_dead[0], worst_dead[1] or "-"))
    results = []

    def res(ok, desc, detail):
        results.append("%s\t%s\t%s" % ("ok" if ok else "fail", desc, detail))

    res(counts["picks"] > 0, "clients made picks", "%d picks" % counts["picks"])
    res(counts["unknown"] == 0, "(a) no pick returned an address etcd never held for the service",
        "%d violations %s" % (counts["unknown"], "; ".join(examples["unknown"])))
    res(counts["removed"] == 0,
        "(a) no pick of an instance removed from etcd more than %.1f s earlier" % args.remove_budget,
        "%d violations; worst lag %.3f s %s" % (counts["removed"], worst_removed[0],
                                               "; ".join(examples["removed"])))
    res(counts["dead"] == 0,
        "(a) no pick of an instance whose backend was dead/frozen for more than %.1f s" %
        args.dead_budget,
        "%d violations; worst lag %.3f s %s" % (counts["dead"], worst_dead[0],
                                               "; ".join(examples["dead"])))
    with open(args.results, "w") as f:
        f.write("\n".join(results) + "\n")
    for r in results:
        print("# " + r.replace("\t", " | "))
    return 0


if __name__ == "__main__":
    sys.exit(main())

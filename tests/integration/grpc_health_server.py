#!/usr/bin/python3
"""grpc_health_server.py - a real gRPC server (Debian's python3-grpcio) with
the standard health service, for the subchannel tests.

    grpc_health_server.py --port PORT [options]

No protoc and no grpcio-health-checking: grpc.health.v1.Health is registered
with grpc.method_handlers_generic_handler, and its two tiny messages are
encoded by hand:

    HealthCheckRequest  { string service = 1; }
    HealthCheckResponse { ServingStatus status = 1; }   UNKNOWN 0, SERVING 1,
                                                        NOT_SERVING 2, SERVICE_UNKNOWN 3

Check answers the status of the asked service (grpc-status NOT_FOUND for a
service it does not know, as grpc's own servicer); Watch sends the status at
once and again at every change (SERVICE_UNKNOWN for an unknown service)
until the client goes away.

Options:
  --bind ADDR           listen address (default 127.0.0.1; "[::1]" for IPv6)
  --port PORT           0 picks a free one (see --port-file)
  --port-file FILE      write the bound port there once serving
  --service NAME        a service it knows besides "" (repeatable)
  --status STATUS       initial status of every known service (SERVING)
  --status-file FILE    polled every 50 ms: one word (SERVING, NOT_SERVING,
                        UNKNOWN) for every service, or lines "NAME STATUS"
                        ("- STATUS" names the "" service)
  --no-health           do not implement grpc.health.v1.Health at all
                        (every call gets UNIMPLEMENTED)
  --no-watch            implement Check only (Watch gets UNIMPLEMENTED, as
                        older servers): clients must poll Check
  --min-ping-interval-ms N   server keepalive enforcement:
                        grpc.http2.min_ping_interval_without_data_ms
  --permit-without-calls     grpc.keepalive_permit_without_calls = 1
  --max-ping-strikes N  grpc.http2.max_ping_strikes (gRPC's default 2)
  --max-connection-idle-ms N  grpc.max_connection_idle_ms: a connection
                        without calls for N ms gets GOAWAY and is closed
                        (grpcio 1.51: error code 2, debug data "enter idle")

SIGUSR1 sets every service SERVING, SIGUSR2 NOT_SERVING.  SIGTERM/SIGINT
stop the server (grace 0.5 s) and exit 0.  Every status change is printed on
stdout with a monotonic timestamp.  The server also answers
/test.Echo/Echo (unary, bytes echoed) so that it is a gRPC server even with
--no-health.
"""

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

STATUS = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}
NAMES = {v: k for k, v in STATUS.items()}


def log(msg):
    sys.stdout.write("%.3f grpc_health_server[%d]: %s\n" % (time.monotonic(), os.getpid(), msg))
    sys.stdout.flush()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def decode_request(data):
    """HealthCheckRequest -> service name ("" by default)."""
    service = ""
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = read_varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = read_varint(data, i)
            if key >> 3 == 1:
                service = bytes(data[i:i + n]).decode("utf-8")
            i += n
        else:
            raise ValueError("wire type %d" % wire)
    return service


def encode_response(status):
    """HealthCheckResponse{status}; 0 is proto3's default: not encoded."""
    return b"" if status == 0 else b"\x08" + varint(status)


class Health:
    def __init__(self, services, initial):
        self.cond = threading.Condition()
        self.status = {s: initial for s in services}
        self.version = 0
        self.stopping = False

    def set_all(self, status):
        with self.cond:
            for s in self.status:
                self.status[s] = status
            self.version += 1
            self.cond.notify_all()
        log("status %s for %s" % (NAMES[status], ", ".join(repr(s) for s in self.status)))

    def set_one(self, service, status):
        with self.cond:
            self.status[service] = status
            self.version += 1
            self.cond.notify_all()
        log("status %s for %r" % (NAMES[status], service))

    def get(self, service):
        with self.cond:
            return self.status.get(service)

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    # -- the two methods --

    def check(self, service, context):
        st = self.get(service)
        if st is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return encode_response(st)

    def watch(self, service, context):
        gone = threading.Event()

        def on_done():
            gone.set()
            with self.cond:
                self.cond.notify_all()

        context.add_callback(on_done)
        last = None
        while not gone.is_set() and context.is_active():
            with self.cond:
                st = self.status.get(service, STATUS["SERVICE_UNKNOWN"])
                if st == last:
                    self.cond.wait(1.0)
                    if self.stopping:
                        return
                    continue
            last = st
            yield encode_response(st)


def apply_status_file(health, path, seen):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return seen
    if text == seen:
        return seen
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for words in lines:
        if len(words) == 1 and words[0] in STATUS:
            health.set_all(STATUS[words[0]])
        elif len(words) == 2 and words[1] in STATUS:
            health.set_one("" if words[0] == "-" else words[0], STATUS[words[1]])
        else:
            log("status file: ignoring %r" % " ".join(words))
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--service", action="append", default=[])
    ap.add_argument("--status", default="SERVING", choices=sorted(STATUS))
    ap.add_argument("--status-file")
    ap.add_argument("--no-health", action="store_true")
    ap.add_argument("--no-watch", action="store_true")
    ap.add_argument("--min-ping-interval-ms", type=int)
    ap.add_argument("--permit-without-calls", action="store_true")
    ap.add_argument("--max-ping-strikes", type=int)
    ap.add_argument("--max-connection-idle-ms", type=int)
    ap.add_argument("--workers", type=int, default=64)
    args = ap.parse_args()

    health = Health([""] + args.service, STATUS[args.status])
    options = []
    if args.min_ping_interval_ms is not None:
        options.append(("grpc.http2.min_ping_interval_without_data_ms", args.min_ping_interval_ms))
    if args.permit_without_calls:
        options.append(("grpc.keepalive_permit_without_calls", 1))
    if args.max_ping_strikes is not None:
        options.append(("grpc.http2.max_ping_strikes", args.max_ping_strikes))
    if args.max_connection_idle_ms is not None:
        options.append(("grpc.max_connection_idle_ms", args.max_connection_idle_ms))

    # Each Watch holds a worker thread for its lifetime.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=options,
                         maximum_concurrent_rpcs=None)
    ident = lambda b: b  # noqa: E731 (bytes in, bytes out)
    handlers = [grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req, ident, ident)})]
    if not args.no_health:
        methods = {"Check": grpc.unary_unary_rpc_method_handler(
            health.check, request_deserializer=decode_request, response_serializer=ident)}
        if not args.no_watch:
            methods["Watch"] = grpc.unary_stream_rpc_method_handler(
                health.watch, request_deserializer=decode_request, response_serializer=ident)
        handlers.append(grpc.method_handlers_generic_handler("grpc.health.v1.Health", methods))
    server.add_generic_rpc_handlers(handlers)
    bind = args.bind if args.bind.startswith("[") or ":" not in args.bind else "[%s]" % args.bind
    port = server.add_insecure_port("%s:%d" % (bind, args.port))
    if port == 0:
        log("cannot bind %s:%d" % (bind, args.port))
        return 1
    server.start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    log("serving on %s:%d (health %s%s, options %s)" % (
        bind, port, "off" if args.no_health else NAMES[STATUS[args.status]],
        ", Check only" if args.no_watch else "", options))

    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(
        target=health.set_all, args=(STATUS["SERVING"],)).start())
    signal.signal(signal.SIGUSR2, lambda *_: threading.Thread(
        target=health.set_all, args=(STATUS["NOT_SERVING"],)).start())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    seen = None
    while not stop.is_set():
        if args.status_file:
            seen = apply_status_file(health, args.status_file, seen)
        stop.wait(0.05)
    health.stop()
    server.stop(0.5).wait()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

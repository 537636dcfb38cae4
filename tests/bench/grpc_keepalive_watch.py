#!/usr/bin/python3
"""grpc_keepalive_watch.py - a python3-grpcio client channel that only keeps
itself connected, printing each connectivity change, for the side-by-side
figure of tests/bench/subchannel_bench.sh.

    grpc_keepalive_watch.py TARGET KEEPALIVE_TIME_MS KEEPALIVE_TIMEOUT_MS

Channel options: the keepalive time and timeout given,
grpc.keepalive_permit_without_calls=1, grpc.http2.max_pings_without_data=0
(no cap on PINGs without data), round_robin.  Prints "WALL_MS STATE" per
change (wall-clock milliseconds, as bash's EPOCHREALTIME) and asks the
channel to connect again whenever it is IDLE, so that it comes back READY
after a fault.  Runs until SIGTERM.
"""

import signal
import sys
import threading
import time

import grpc


def main():
    target, ka_time, ka_timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = [
        ("grpc.keepalive_time_ms", ka_time),
        ("grpc.keepalive_timeout_ms", ka_timeout),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.lb_policy_name", "round_robin"),
        # Short reconnect backoff: only the detection is measured.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    channel = grpc.insecure_channel(target, options=options)
    state = {"s": None}
    stop = threading.Event()

    def on_change(s):
        state["s"] = s
        print("%d %s" % (time.time() * 1000, s.name), flush=True)

    channel.subscribe(on_change, try_to_connect=True)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.1):
        if state["s"] in (grpc.ChannelConnectivity.IDLE, None):
            # Not a public API, but the one grpc.channel_ready_future uses.
            channel._channel.check_connectivity_state(True)
    channel.close()


if __name__ == "__main__":
    main()

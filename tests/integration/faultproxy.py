#!/usr/bin/python3
"""faultproxy.py - a userspace TCP proxy that breaks the path on command.

    faultproxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --control PATH
    faultproxy.py --control PATH --send COMMAND      (a client: sends, waits for the answer)

It forwards every connection accepted on --listen to --target, byte for byte,
until told otherwise.  Commands (one word a line):

  pass     forward (the initial state).  From `refuse`: listen again.
  freeze   stop forwarding in both directions but keep every socket open: the
           peers see a connection that is up and silent (a hung server, a
           black-holed path with the handshake done).  Bytes already read are
           held, not lost.  New connections complete the TCP handshake in the
           kernel's backlog and wait, unaccepted, until `pass`.
  stall    freeze only the connections open now (as `freeze` does); new
           connections are forwarded normally.  One stream goes silent while
           its peer stays reachable (a dropped flow, a stuck HTTP/2
           connection).  `pass` resumes the stalled ones.
  reset    close every connection now with a RST to both sides (SO_LINGER 0);
           the state does not change (after `pass`, new connections are
           forwarded again at once).
  close    like reset, with an orderly FIN instead of a RST.
  refuse   reset every connection and stop listening: new connects get
           ECONNREFUSED until `pass`.
  garble   once: in the next bytes from the target that hold a watch event
           (`"kv":{"key":"`), replace the first character of the key's base64
           with `*`.  The length stays (HTTP framing intact) and the JSON stays
           valid, but the key no longer decodes: a message the reader cannot
           use, as bit rot on the path or a buggy middlebox would make.
  status   answer with the state and the number of connections.
  quit     exit (as SIGTERM does).

The control PATH is a Unix stream socket when it ends in ".sock" or already is
a socket; the answer to a command is one line, "ok STATE CONNECTIONS" or
"err REASON".  Any other PATH is a control file: write the command into it
(`echo freeze >PATH`); the proxy polls it every 20 ms, applies each new
content once and writes its answer to PATH.ack.  `--send` works with both and
returns once the command is in effect (exit 0), 1 on "err", 2 when the proxy
does not answer within --timeout seconds.

Every state change and every connection opened or ended is printed on stdout,
one line each, prefixed with a monotonic timestamp; `--quiet` prints only the
state changes.  SIGTERM and SIGINT end it (exit 0).  Python standard library
only; IPv4, IPv6 ("[::1]:PORT") and host names.
"""

import argparse
import errno
import os
import selectors
import signal
import socket
import stat
import sys
import time

GARBLE_MARK = b'"kv":{"key":"'
BUF_CAP = 256 * 1024  # held per direction before reading stops (backpressure)
CHUNK = 65536
POLL_S = 0.02


def log(msg):
    sys.stdout.write("%.3f faultproxy: %s\n" % (time.monotonic(), msg))
    sys.stdout.flush()


def parse_hostport(text):
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError("expected [HOST]:PORT, got %r" % text)
        return host, int(rest[1:])
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, got %r" % text)
    return host, int(port)


class Side:
    """One socket of a forwarded connection and the bytes waiting to be
    written to it."""

    def __init__(self, sock, name):
        self.sock = sock
        self.name = name
        self.out = bytearray()  # to be written to this socket
        self.read_eof = False  # the peer sent FIN
        self.wrote_eof = False  # we shut down our write side
        self.registered = 0


class Pair:
    def __init__(self, proxy, client, peer):
        self.proxy = proxy
        self.id = proxy.next_id
        proxy.next_id += 1
        self.peer = "%s:%s" % peer[:2]
        self.client = Side(client, "client")
        self.upstream = None
        self.connecting = False
        self.closed = False
        self.stalled = False  # frozen by `stall`, whatever the state

    def other(self, side):
        return self.upstream if side is self.client else self.client


class Proxy:
    def __init__(self, args):
        self.listen_addr = parse_hostport(args.listen)
        self.target_addr = parse_hostport(args.target)
        self.quiet = args.quiet
        self.sel = selectors.DefaultSelector()
        self.state = "pass"
        self.pairs = set()
        self.next_id = 1
        self.listener = None
        self.control_path = args.control
        self.control_sock = None
        self.control_file = None
        self.control_seen = None
        self.running = True
        self.garble_pending = False
        self.listen()
        if self.control_path:
            self.setup_control()

    # ---- plumbing ----

    def note(self, msg):
        if not self.quiet:
            log(msg)

    def listen(self):
        host, port = self.listen_addr
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(128)
        s.setblocking(False)
        self.listener = s
        self.update_listener()
        log("listening on %s:%d, forwarding to %s:%d" % (host, s.getsockname()[1],
                                                          self.target_addr[0],
                                                          self.target_addr[1]))

    def update_listener(self):
        if self.listener is None:
            return
        want = self.state == "pass"
        try:
            self.sel.get_key(self.listener)
            have = True
        except KeyError:
            have = False
        if want and not have:
            self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        elif not want and have:
            self.sel.unregister(self.listener)

    def setup_control(self):
        p = self.control_path
        is_sock = p.endswith(".sock")
        try:
            is_sock = is_sock or stat.S_ISSOCK(os.stat(p).st_mode)
        except OSError:
            pass
        if is_sock:
            try:
                os.unlink(p)
            except OSError:
                pass
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(p)
            s.listen(16)
            s.setblocking(False)
            self.control_sock = s
            self.sel.register(s, selectors.EVENT_READ, ("control-accept", None))
        else:
            self.control_file = p
            # Whatever the file holds at start is not a command for us.
            self.control_seen = self.read_control_file()

    def read_control_file(self):
        try:
            with open(self.control_file, "rb") as f:
                return f.read()
        except OSError:
            return None

    def set_interest(self, side, pair):
        """Registers `side` for what it needs now in the current state."""
        if side is None or side.sock is None:
            return
        ev = 0
        if self.state == "pass" and not pair.closed and not pair.stalled:
            other = pair.other(side)
            if pair.connecting:
                if side is pair.upstream:
                    ev |= selectors.EVENT_WRITE
            else:
                if (other is not None and not side.read_eof and len(other.out) < BUF_CAP):
                    ev |= selectors.EVENT_READ
                if side.out:
                    ev |= selectors.EVENT_WRITE
        if ev == side.registered:
            return
        if side.registered and ev:
            self.sel.modify(side.sock, ev, ("io", (pair, side)))
        elif side.registered:
            self.sel.unregister(side.sock)
        else:
            self.sel.register(side.sock, ev, ("io", (pair, side)))
        side.registered = ev

    def refresh(self, pair):
        self.set_interest(pair.client, pair)
        self.set_interest(pair.upstream, pair)

    # ---- connections ----

    def on_accept(self):
        while True:
            try:
                c, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log("accept: %s" % e)
                return
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = Pair(self, c, peer)
            self.pairs.add(pair)
            try:
                infos = socket.getaddrinfo(self.target_addr[0], self.target_addr[1],
                                           type=socket.SOCK_STREAM)
                family, _, _, _, addr = infos[0]
                u = socket.socket(family, socket.SOCK_STREAM)
                u.setblocking(False)
                u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pair.upstream = Side(u, "upstream")
                rc = u.connect_ex(addr)
            except OSError as e:
                rc = e.errno or errno.ECONNREFUSED
            if rc not in (0, errno.EINPROGRESS):
                self.note("conn %d from %s: target connect failed: %s" %
                          (pair.id, pair.peer, os.strerror(rc)))
                self.end_pair(pair, rst=True)
                continue
            pair.connecting = rc != 0
            self.note("conn %d from %s opened (%d open)" % (pair.id, pair.peer, len(self.pairs)))
            self.refresh(pair)

    def send_held(self, pair, s):
        """Sends what s holds towards its peer, as much as the socket takes;
        False when that ended the pair (an error: RST to both sides)."""
        try:
            n = s.sock.send(s.out)
            del s.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self.end_pair(pair, rst=True, why="%s: %s" % (s.name, e.strerror or e))
            return False
        return True

    def end_pair(self, pair, rst, why=None):
        if pair.closed:
            return
        pair.closed = True
        for side in (pair.client, pair.upstream):
            if side is None or side.sock is None:
                continue
            if side.registered:
                self.sel.unregister(side.sock)
                side.registered = 0
            if rst:
                try:
                    side.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            try:
                side.sock.close()
            except OSError:
                pass
            side.sock = None
        self.pairs.discard(pair)
        if why:
            self.note("conn %d from %s ended: %s (%d open)" % (pair.id, pair.peer, why,
                                                              len(self.pairs)))

    def on_io(self, pair, side, mask):
        if pair.closed or pair.stalled:
            return
        if pair.connecting and side is pair.upstream and mask & selectors.EVENT_WRITE:
            err = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.end_pair(pair, rst=True, why="target connect failed: %s" % os.strerror(err))
                return
            pair.connecting = False
            self.refresh(pair)
            return
        other = pair.other(side)
        if mask & selectors.EVENT_READ and self.state == "pass":
            try:
                data = side.sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as e:
                self.end_pair(pair, rst=True, why="%s: %s" % (side.name, e.strerror or e))
                return
            if data is not None:
                if data:
                    if self.garble_pending and side is pair.upstream:
                        data = self.garble(pair, data)
                    other.out += data
                else:
                    side.read_eof = True
        if mask & selectors.EVENT_WRITE and self.state == "pass" and side.out:
            if not self.send_held(pair, side):
                return
        # Push what we now hold towards the other side at once.
        if other.out and self.state == "pass":
            if not self.send_held(pair, other):
                return
        # Half-close forwarding: a FIN is passed on once its bytes are.
        for s in (pair.client, pair.upstream):
            o = pair.other(s)
            if s.read_eof and not o.out and not o.wrote_eof:
                try:
                    o.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                o.wrote_eof = True
        if (pair.client.read_eof and pair.upstream.read_eof and not pair.client.out and
                not pair.upstream.out):
            self.end_pair(pair, rst=False, why="closed by both sides")
            return
        self.refresh(pair)

    def garble(self, pair, data):
        i = data.find(GARBLE_MARK)
        j = i + len(GARBLE_MARK)
        if i < 0 or j >= len(data):
            return data
        self.garble_pending = False
        log("garble: conn %d: one event's key made undecodable" % pair.id)
        return data[:j] + b"*" + data[j + 1:]

    # ---- commands ----

    def command(self, word):
        word = word.strip().lower()
        old = self.state
        if word == "pass":
            n = sum(1 for pair in self.pairs if pair.stalled)
            for pair in self.pairs:
                pair.stalled = False
            if n:
                log("pass: %d stalled connections resumed" % n)
            if self.listener is None:
                try:
                    self.listen()
                except OSError as e:
                    return "err cannot listen again: %s" % e
            self.state = "pass"
        elif word == "freeze":
            if self.listener is None:
                return "err refusing: `pass` first"
            self.state = "freeze"
        elif word == "stall":
            for pair in self.pairs:
                pair.stalled = True
            log("stall: %d connections frozen, new ones forwarded" % len(self.pairs))
        elif word in ("reset", "close"):
            n = len(self.pairs)
            for pair in list(self.pairs):
                self.end_pair(pair, rst=word == "reset")
            log("%s: %d connections closed%s" % (word, n, " with RST" if word == "reset" else ""))
        elif word == "refuse":
            n = len(self.pairs)
            for pair in list(self.pairs):
                self.end_pair(pair, rst=True)
            if self.listener is not None:
                try:
                    self.sel.unregister(self.listener)
                except KeyError:
                    pass
                self.listener.close()
                self.listener = None
            self.state = "refuse"
            log("refuse: %d connections reset, not listening" % n)
        elif word == "garble":
            self.garble_pending = True
        elif word == "status":
            pass
        elif word == "quit":
            self.running = False
        elif word == "":
            return "err empty command"
        else:
            return ("err unknown command %r (pass, freeze, stall, reset, close, refuse, garble, "
                    "status, quit)" % word)
        if self.state != old:
            log("state %s -> %s (%d connections)" % (old, self.state, len(self.pairs)))
        self.update_listener()
        for pair in list(self.pairs):
            self.refresh(pair)
        if self.state == "pass":
            # Resume what freeze held: flush buffers now.
            for pair in list(self.pairs):
                if not pair.connecting:
                    self.on_io(pair, pair.client, 0)
        stalled = sum(1 for pair in self.pairs if pair.stalled)
        return "ok %s %d%s" % (self.state, len(self.pairs),
                               " (%d stalled)" % stalled if stalled else "")

    def on_control_accept(self):
        try:
            c, _ = self.control_sock.accept()
        except OSError:
            return
        c.setblocking(False)
        self.sel.register(c, selectors.EVENT_READ, ("control", [c, bytearray()]))

    def on_control(self, ctx):
        c, buf = ctx
        try:
            data = c.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(c)
            c.close()
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            answer = self.command(line.decode("utf-8", "replace"))
            try:
                c.setblocking(True)
                c.sendall((answer + "\n").encode())
                c.setblocking(False)
            except OSError:
                pass

    def poll_control_file(self):
        data = self.read_control_file()
        if data is None or data == self.control_seen:
            return
        self.control_seen = data
        text = data.decode("utf-8", "replace").strip()
        if not text:
            return
        # "COMMAND [NONCE]": the nonce (from --send) is echoed in the ack.
        parts = text.split()
        answer = self.command(parts[0])
        nonce = parts[1] if len(parts) > 1 else ""
        tmp = self.control_file + ".ack.tmp"
        with open(tmp, "w") as f:
            f.write("%s %s\n" % (nonce, answer))
        os.replace(tmp, self.control_file + ".ack")

    # ---- main loop ----

    def run(self):
        while self.running:
            timeout = POLL_S if self.control_file else None
            for key, mask in self.sel.select(timeout):
                kind, ctx = key.data
                if kind == "accept":
                    if self.state == "pass" and self.listener is not None:
                        self.on_accept()
                elif kind == "io":
                    self.on_io(ctx[0], ctx[1], mask)
                elif kind == "control-accept":
                    self.on_control_accept()
                elif kind == "control":
                    self.on_control(ctx)
            if self.control_file:
                self.poll_control_file()
        self.shutdown()

    def shutdown(self):
        for pair in list(self.pairs):
            self.end_pair(pair, rst=False)
        if self.listener is not None:
            self.listener.close()
        if self.control_sock is not None:
            self.control_sock.close()
            try:
                os.unlink(self.control_path)
            except OSError:
                pass
        log("exiting")


def send(args):
    p = args.control
    deadline = time.monotonic() + args.timeout
    is_sock = p.endswith(".sock")
    try:
        is_sock = is_sock or stat.S_ISSOCK(os.stat(p).st_mode)
    except OSError:
        pass
    if is_sock:
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.connect(p)
                s.sendall((args.send + "\n").encode())
                answer = b""
                while not answer.endswith(b"\n"):
                    d = s.recv(4096)
                    if not d:
                        break
                    answer += d
                s.close()
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    print("faultproxy: no answer on %s: %s" % (p, e), file=sys.stderr)
                    return 2
                time.sleep(0.05)
        answer = answer.decode().strip()
    else:
        nonce = "%d.%d" % (os.getpid(), time.monotonic_ns())
        tmp = p + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%s %s\n" % (args.send, nonce))
        os.replace(tmp, p)
        answer = None
        while time.monotonic() < deadline:
            try:
                with open(p + ".ack") as f:
                    got = f.read().strip()
                n, _, rest = got.partition(" ")
                if n == nonce:
                    answer = rest
                    break
            except OSError:
                pass
            time.sleep(0.01)
        if answer is None:
            print("faultproxy: no answer in %s.ack" % p, file=sys.stderr)
            return 2
    print(answer)
    return 0 if answer.startswith("ok") else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--listen", help="HOST:PORT to accept on")
    ap.add_argument("--target", help="HOST:PORT to forward to")
    ap.add_argument("--control", help="control socket (*.sock) or file")
    ap.add_argument("--state", default="pass", choices=["pass", "freeze", "refuse"],
                    help="initial state (default pass)")
    ap.add_argument("--send", metavar="COMMAND", help="client mode: send COMMAND and wait")
    ap.add_argument("--timeout", type=float, default=5.0, help="--send: seconds to wait")
    ap.add_argument("--quiet", action="store_true", help="print state changes only")
    args = ap.parse_args()
    if args.send:
        if not args.control:
            ap.error("--send needs --control")
        sys.exit(send(args))
    if not args.listen or not args.target:
        ap.error("--listen and --target are required")

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy = Proxy(args)
    if args.state != "pass":
        proxy.command(args.state)
    try:
        proxy.run()
    except SystemExit:
        proxy.shutdown()
        raise


if __name__ == "__main__":
    main()

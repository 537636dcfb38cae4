#!/usr/bin/python3
"""gateway503.py - a TCP proxy in front of etcd's JSON gateway that answers
chosen requests with an HTTP 503, as an overloaded or restarting member would.

    gateway503.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --match TEXT

Every connection accepted on --listen is forwarded to --target byte for byte,
except when the body of its first HTTP request contains TEXT: that request is
answered "503 Service Unavailable" and the connection is closed.  Only the
first request of a connection is looked at (resolverd opens a fresh
connection for each stream and each liveness check; pooled requests after the
first pass unexamined).  Each 503 is printed on stdout ("503 PATH"), each
forwarded connection as "pass PATH".  Python standard library only.
"""

import argparse
import socket
import sys
import threading


def log(msg):
    sys.stdout.write("gateway503: %s\n" % msg)
    sys.stdout.flush()


def hostport(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def read_request(conn):
    """The first request's bytes (head and Content-Length body), or None."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
        data += chunk
    return data, head.split(b" ")[1].decode("latin-1", "replace"), body


def pipe(src, dst):
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(conn, target, match):
    try:
        req = read_request(conn)
        if req is None:
            conn.close()
            return
        data, path, body = req
        if match in body:
            log("503 %s" % path)
            msg = b'{"error":"unavailable","code":14,"message":"injected 503"}'
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
            conn.close()
            return
        log("pass %s" % path)
        up = socket.create_connection(target, timeout=5)
        up.settimeout(None)
        up.sendall(data)
    except OSError:
        conn.close()
        return
    threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
    pipe(conn, up)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--match", required=True)
    args = ap.parse_args()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(hostport(args.listen))
    lsock.listen(64)
    log("listening on %s" % args.listen)
    target = hostport(args.target)
    match = args.match.encode()
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn, target, match), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

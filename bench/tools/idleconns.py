#!/usr/bin/python3
"""Opens N keep-alive connections to an HTTP server, makes one request on each (GET PATH, Host HOST), reads the
response whole and keeps the connection open, idle. Prints "ready N" when all are open, then waits until its
standard input closes. For measuring what an idle keep-alive connection costs a proxy.
Usage: idleconns.py PORT N PATH HOST
"""
import socket
import sys

port, n, path, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed in the body")
        body += chunk
    conns.append(s)
print(f"ready {len(conns)}", flush=True)
sys.stdin.read()

#!/usr/bin/env python3
"""A chat server in the classic teaching style, as a benchmark reference.

    select-chat.py PORT

One select() loop over the listening socket and every client; blocking
sockets; each complete line is sent to every other client with sendall(),
one line at a time. Same wire as netechod's chat (SPEC section 5, the part
netecho bench --chat needs): the first line is the name, answered with
"* you are NAME@HOST; N online"; later lines go to the others as
"<NAME> text" CRLF. Binds 127.0.0.1:PORT, prints "ready", serves until
killed. Bench-only; never installed.
"""

import select
import socket
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: select-chat.py PORT")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen(1024)
    print("ready", flush=True)

    clients = []   # every connected socket
    names = {}     # socket -> name, once it sent one
    buffers = {}   # socket -> bytes of a line not yet complete

    def drop(sock):
        clients.remove(sock)
        names.pop(sock, None)
        buffers.pop(sock, None)
        sock.close()

    def broadcast(sender, data):
        for other in list(clients):
            if other is not sender and other in names:
                try:
                    other.sendall(data)
                except OSError:
                    drop(other)

    while True:
        readable, _, _ = select.select([server] + clients, [], [])
        for sock in readable:
            if sock is server:
                conn, addr = server.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                clients.append(conn)
                buffers[conn] = b""
                continue
            if sock not in buffers:
                continue  # dropped earlier in this round
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                drop(sock)
                continue
            buffers[sock] += data
            while b"\n" in buffers.get(sock, b""):
                line, buffers[sock] = buffers[sock].split(b"\n", 1)
                line = line.rstrip(b"\r")
                if sock not in names:
                    names[sock] = line.decode("utf-8", "replace")
                    host = sock.getpeername()[0]
                    sock.sendall(("* you are %s@%s; %d online\r\n"
                                  % (names[sock], host, len(names))).encode())
                    continue
                broadcast(sock, b"<" + names[sock].encode() + b"> " + line + b"\r\n")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

"""Raw sockets against a server on 127.0.0.1: connect from a chosen loopback address, see
whether the server closes, send a plain GET."""

from __future__ import annotations

import select
import socket
import time

BOUND = 15.0
"""Seconds a test waits for what the guard must do (the deadlines under test are < 1 s)."""


def connect(port: int, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    """A connection to ``port`` from ``source`` (any 127.x address), with ``rcvbuf`` if given."""
    sock = socket.socket()
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = BOUND) -> bool:
    """Whether the server closes ``sock`` (FIN or RST) within ``timeout``, reading past any
    response bytes."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False


def get(port: int, source: str = "127.0.0.1", path: str = "/") -> bytes:
    """``GET path`` from ``source`` with ``Connection: close``: the whole answer."""
    with connect(port, source) as sock:
        sock.settimeout(BOUND)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer

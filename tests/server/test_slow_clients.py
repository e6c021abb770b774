"""Slow clients within bounds (slowloris): a real `matelix serve` holding 100 connections that trickle their
headers or bodies a byte at a time keeps answering everyone else, and takes no harm once they give up."""

from __future__ import annotations

import socket

import httpx

from matelix.server.live import ServerProcess

SLOW_CLIENTS = 50


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_clients_trickling_headers_or_bodies_do_not_stop_the_server(home):
    (home / "datasets" / "t.csv").write_text("text\nhallo\n")
    with ServerProcess.lab(home) as server:
        headers_slow, bodies_slow = [], []
        for _ in range(SLOW_CLIENTS):
            s = _connect(server.port)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            headers_slow.append(s)
            b = _connect(server.port)
            b.sendall(b"POST /datasets/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            bodies_slow.append(b)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for round_ in range(5):
                for s in headers_slow + bodies_slow:
                    s.sendall(b"a" if s in headers_slow else b" ")
                assert client.get("/health").status_code == 200, round_
                r = client.post("/datasets/validate", json={"dataset": "t.csv"})
                assert r.status_code == 200 and r.json()["samples"] == 1, round_
        for s in headers_slow + bodies_slow:
            s.close()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/status").status_code == 200
            assert client.post("/datasets/validate", json={"dataset": "t.csv"}).status_code == 200
        assert server.proc.poll() is None

"""Spec point 2: keep-alive, pipelining, HTTP/1.0, Expect: 100-continue, HEAD,
request bodies (chunked / Content-Length) intact, half-closed clients."""

import hashlib
import os
import socket

import pytest

from helpers import HttpConn, build_request, chunk_body, make_config, pattern_sha256


@pytest.fixture
def gw(origin, torii):
    return torii(make_config(origin.port))


def test_keepalive_many_requests_one_connection(gw, origin):
    with HttpConn(gw.port) as c:
        for i in range(50):
            c.request("GET", f"/echo?i={i}")
            r = c.read_response()
            assert r.status == 200
            assert r.json()["query"] == f"i={i}"
            assert r.header("Connection", "").lower() != "close"
        assert c.is_open_now()
    assert origin.stats()["paths"]["/echo"] == 50


def test_pipelining_in_order(gw):
    reqs = (
        build_request("GET", "/delay?ms=400&i=1")
        + build_request("POST", "/echo?i=2", body=b"x" * 1000)
        + build_request("GET", "/bytes/7777")
        + build_request("HEAD", "/bytes/10")
        + build_request("GET", "/echo?i=5")
    )
    with HttpConn(gw.port) as c:
        c.send(reqs)  # one write
        r1 = c.read_response()
        assert r1.status == 200 and r1.json()["query"] == "ms=400&i=1"
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["query"] == "i=2" and r2.json()["body_length"] == 1000
        r3 = c.read_response()
        assert r3.status == 200 and r3.body == bytes(i % 251 for i in range(7777))
        r4 = c.read_response(method="HEAD")
        assert r4.status == 200 and r4.header("Content-Length") == "10"
        r5 = c.read_response()
        assert r5.status == 200 and r5.json()["query"] == "i=5"
        assert c.buf == b""


def test_http10_client_connection_closes(gw):
    with HttpConn(gw.port) as c:
        c.send(b"GET /echo?v=10 HTTP/1.0\r\nHost: test.local\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert r.json()["query"] == "v=10"
        assert c.closed_within(2.0), "gateway kept an HTTP/1.0 connection open without keep-alive"


def test_http10_client_without_host(gw):
    with HttpConn(gw.port) as c:
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200


def test_http10_keepalive(gw):
    with HttpConn(gw.port) as c:
        for i in range(3):
            c.send(f"GET /echo?i={i} HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n".encode())
            r = c.read_response()
            assert r.status == 200 and r.json()["query"] == f"i={i}"
            assert "keep-alive" in r.header("Connection", "").lower(), r.headers
            # an HTTP/1.0 client cannot parse chunked framing
            assert r.header("Transfer-Encoding") is None
        assert c.is_open_now()


def test_http10_client_gets_no_chunked(gw):
    """A chunked upstream response is de-chunked for an HTTP/1.0 client (repeated: the
    chunk boundaries fall differently across reads each time)."""
    for i, chunks in enumerate([1, 2, 5, 7, 50] * 3):
        with HttpConn(gw.port) as c:
            c.send(f"GET /chunked?size=50000&chunks={chunks} HTTP/1.0\r\nHost: test.local\r\n\r\n".encode())
            r = c.read_response()
            assert r.status == 200
            assert r.header("Transfer-Encoding") is None
            n = len(r.body)
            assert n == 50000, f"attempt {i} ({chunks} chunks): {n} bytes, tail {r.body[-12:]!r}"
            assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(50000)


def test_expect_100_continue(gw):
    body = os.urandom(100_000)
    with HttpConn(gw.port) as c:
        c.send(build_request("POST", "/echo", headers={"Expect": "100-continue",
                                                       "Content-Length": str(len(body))}))
        interim = c.read_response(timeout=3, skip_interim=False)
        assert interim.status == 100, f"expected 100 Continue first, got {interim!r}"
        assert interim.version == "HTTP/1.1"
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert doc["body_length"] == len(body)
        assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
        # re-framed or passed through, the upstream request has exactly one framing
        framing = {k.lower(): v for k, v in doc["headers"] if k.lower() in ("content-length", "transfer-encoding")}
        assert len(framing) == 1, doc["headers"]
        assert framing.get("transfer-encoding", "chunked").lower() == "chunked", framing
        c.request("GET", "/echo?after=1")
        assert c.read_response().json()["query"] == "after=1"


def test_head_preserves_headers_no_body(gw):
    with HttpConn(gw.port) as c:
        c.request("HEAD", "/bytes/12345")
        r = c.read_response(method="HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == "12345"
        assert r.header("X-Body-Sha256") == pattern_sha256(12345)
        c.request("GET", "/bytes/3")
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"\x00\x01\x02"


def test_chunked_request_body_intact(gw):
    body = os.urandom(5 * 1024 * 1024 + 17)
    with HttpConn(gw.port, timeout=30) as c:
        c.send(build_request("POST", "/echo", headers={"Transfer-Encoding": "chunked"})
               + chunk_body(body, [1, 4093, 65536, 333, 1 << 20]))
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert doc["body_length"] == len(body)
        assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
        # re-framed or passed through, the upstream request has exactly one framing
        framing = {k.lower(): v for k, v in doc["headers"] if k.lower() in ("content-length", "transfer-encoding")}
        assert len(framing) == 1, doc["headers"]
        assert framing.get("transfer-encoding", "chunked").lower() == "chunked", framing
        c.request("GET", "/echo?after=1")
        assert c.read_response().json()["query"] == "after=1"


def test_chunked_request_with_extensions_and_trailers(gw):
    body = b"hello, chunked world"
    wire = (build_request("POST", "/echo", headers={"Transfer-Encoding": "chunked"})
            + b"5;ext=1\r\nhello\r\n" + b"f\r\n, chunked world\r\n" + b"0\r\nX-Trailer: t\r\n\r\n")
    with HttpConn(gw.port) as c:
        c.send(wire)
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_content_length_request_body_intact(gw):
    body = os.urandom(5 * 1024 * 1024 + 3)
    with HttpConn(gw.port, timeout=30) as c:
        c.request("PUT", "/echo", body=body)
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert doc["method"] == "PUT"
        assert doc["body_length"] == len(body)
        assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_client_half_close_still_gets_response(gw):
    with HttpConn(gw.port) as c:
        c.request("GET", "/bytes/200000")
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(200000)


def test_client_half_close_after_slow_request(gw):
    with HttpConn(gw.port) as c:
        c.request("GET", "/delay?ms=300")
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200 and r.json()["query"] == "ms=300"

"""Spec point 3: request size limits and client timeouts, connection limit."""

import socket
import threading
import time

from helpers import Closed, HttpConn, build_request, make_config, wait_for


def test_uri_too_long_414(origin, torii):
    t = torii(make_config(origin.port))
    with HttpConn(t.port) as c:
        c.request("GET", "/echo?" + "a" * 9000)
        r = c.read_response()
    assert r.status == 414
    assert origin.stats()["connections"] == 0


def test_uri_just_below_limit_ok(origin, torii):
    t = torii(make_config(origin.port))
    with HttpConn(t.port) as c:
        c.request("GET", "/echo?" + "a" * 7000)
        assert c.read_response().status == 200


def test_header_bytes_431(origin, torii):
    t = torii(make_config(origin.port))
    headers = [(f"X-Big-{i}", "v" * 1000) for i in range(40)]  # ~40 KB, 40 headers
    with HttpConn(t.port) as c:
        c.request("GET", "/echo", headers=headers)
        r = c.read_response()
    assert r.status == 431
    assert origin.stats()["connections"] == 0


def test_header_count_431(origin, torii):
    t = torii(make_config(origin.port))
    headers = [(f"X-H-{i}", "v") for i in range(150)]  # tiny, but too many
    with HttpConn(t.port) as c:
        c.request("GET", "/echo", headers=headers)
        r = c.read_response()
    assert r.status == 431
    assert origin.stats()["connections"] == 0


def test_headers_within_limits_ok(origin, torii):
    t = torii(make_config(origin.port))
    headers = [(f"X-H-{i}", "v" * 200) for i in range(80)]
    with HttpConn(t.port) as c:
        c.request("GET", "/echo", headers=headers)
        r = c.read_response()
    assert r.status == 200
    assert len([h for h in r.json()["headers"] if h[0].startswith("X-H-")]) == 80


def test_body_too_large_413(origin, torii):
    t = torii(make_config(origin.port, limits={"max_body": "1MiB"}))
    with HttpConn(t.port) as c:
        # announce 2 MiB but send nothing: the gateway must decide from the header alone
        c.send(build_request("POST", "/echo", headers={"Content-Length": str(2 * 1024 * 1024)}))
        r = c.read_response(timeout=3)
    assert r.status == 413
    assert origin.stats()["connections"] == 0


def test_body_at_limit_ok(origin, torii):
    t = torii(make_config(origin.port, limits={"max_body": "1MiB"}))
    with HttpConn(t.port) as c:
        c.request("POST", "/echo", body=b"z" * (1024 * 1024))
        r = c.read_response()
    assert r.status == 200 and r.json()["body_length"] == 1024 * 1024


def _expect_408_and_close(c, t0, lo=0.8, hi=4.0):
    r = c.read_response(timeout=hi + 2)
    elapsed = time.monotonic() - t0
    assert r.status == 408, r
    assert lo <= elapsed <= hi, f"408 after {elapsed:.2f}s"
    assert c.closed_within(2.0), "connection not closed after 408"


def test_slow_headers_408(origin, torii):
    t = torii(make_config(origin.port, timeouts={"header_read": "1s"}))
    with HttpConn(t.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-Partial: ")
        _expect_408_and_close(c, t0)
    assert origin.stats()["connections"] == 0


def test_slowloris_drip_headers_408(origin, torii):
    """header_read bounds the whole header phase, not just the gap between bytes."""
    t = torii(make_config(origin.port, timeouts={"header_read": "1s"}))
    stop = threading.Event()
    with HttpConn(t.port) as c:
        def drip():
            try:
                c.send(b"GET /echo HTTP/1.1\r\nHost: test.local\r\n")
                i = 0
                while not stop.wait(0.2):
                    c.send(f"X-Drip-{i}: x\r\n".encode())
                    i += 1
            except OSError:
                pass

        th = threading.Thread(target=drip, daemon=True)
        t0 = time.monotonic()
        th.start()
        try:
            try:
                r = c.read_response(timeout=6)
            except Closed:
                raise AssertionError("closed without a 408 response")
            elapsed = time.monotonic() - t0
            assert r.status == 408, r
            assert elapsed <= 4.0, f"408 after {elapsed:.2f}s although header_read is 1s"
        finally:
            stop.set()
            th.join(2)


def test_body_stall_408(origin, torii):
    t = torii(make_config(origin.port, timeouts={"body_read": "1s"}))
    with HttpConn(t.port) as c:
        t0 = time.monotonic()
        c.send(build_request("POST", "/echo", headers={"Content-Length": "100"}) + b"0123456789")
        _expect_408_and_close(c, t0)


def test_keepalive_idle_close(origin, torii):
    t = torii(make_config(origin.port, timeouts={"keepalive_idle": "1s"}))
    with HttpConn(t.port) as c:
        c.request("GET", "/echo")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_within(4.0), "idle keep-alive connection not closed"
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, keepalive_idle is 1s"


def test_keepalive_not_closed_while_active(origin, torii):
    t = torii(make_config(origin.port, timeouts={"keepalive_idle": "1s"}))
    with HttpConn(t.port) as c:
        for i in range(3):
            c.request("GET", "/delay?ms=700")  # each request alone is shorter than the idle timeout
            assert c.read_response().status == 200


def test_max_connections_per_worker(origin, torii):
    t = torii(make_config(origin.port, workers=1, limits={"max_connections": 4}))
    held = [HttpConn(t.port) for _ in range(4)]
    extra = None
    try:
        for c in held:
            c.request("GET", "/echo")
            assert c.read_response().status == 200
        extra = HttpConn(t.port)
        try:
            extra.request("GET", "/echo?extra=1")
        except OSError:
            pass
        try:
            rest = extra.read_until_eof(3.0)
        except socket.timeout:
            raise AssertionError("5th connection neither closed nor refused with max_connections 4")
        assert b" 200 " not in rest.split(b"\r\n", 1)[0], f"5th connection was served: {rest[:200]!r}"
        # held connections are unaffected
        for c in held:
            c.request("GET", "/echo")
            assert c.read_response().status == 200
        # freeing a slot lets a new connection in
        held.pop().close()

        def new_conn_works():
            try:
                with HttpConn(t.port, timeout=2) as c2:
                    c2.request("GET", "/echo")
                    return c2.read_response().status == 200
            except (Closed, OSError):
                return False

        wait_for(new_conn_works, 5, interval=0.1, what="a connection after one was freed")
    finally:
        for c in held:
            c.close()
        if extra:
            extra.close()

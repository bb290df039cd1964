"""Spec point 4: request smuggling shapes -> 400, connection closed, origin never contacted."""

import pytest

from helpers import Closed, HttpConn, make_config

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n"

CASES = {
    "cl-and-te": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 50\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-and-cl": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 3\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two-different-cl": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n"
                        b"Content-Length: 46\r\n\r\nhello" + SMUGGLED,
    "duplicate-cl": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n"
                    b"Content-Length: 5\r\n\r\nhello",
    "te-gzip": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
    "te-chunked-then-gzip": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                            b"0\r\n\r\n",
    "te-xchunked": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: xchunked\r\n\r\n"
                   b"0\r\n\r\n" + SMUGGLED,
    "bare-lf": b"GET /echo HTTP/1.1\nHost: test.local\n\n",
    "bare-lf-in-header": b"GET /echo HTTP/1.1\r\nHost: test.local\nX-A: 1\r\n\r\n",
    "obs-fold-space": b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    "no-host-http11": b"GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "two-hosts": b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    "header-name-paren": b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX(Bad): 1\r\n\r\n",
    "header-name-space": b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX Bad: 1\r\n\r\n",
    "space-before-colon": b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding : chunked\r\n"
                          b"Content-Length: 3\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_smuggling_shape_rejected(origin, torii, name):
    t = torii(make_config(origin.port))
    with HttpConn(t.port, timeout=5) as c:
        c.send(CASES[name])
        try:
            r = c.read_response()
        except Closed:
            raise AssertionError("connection closed without a 400 response")
        assert r.status == 400, r
        assert c.closed_within(2.0), "connection not closed after the 400"
    stats = origin.stats()
    assert stats["connections"] == 0 and stats["total"] == 0, f"origin saw traffic: {stats}"

"""Spec point 5: hop-by-hop stripping, X-Forwarded-*, Via, X-Request-Id, byte-exact relaying,
bodiless responses (HEAD/204/304) keeping the connection usable."""

import hashlib

import pytest
from helpers import HTTP, HttpConn, echo_header, echo_headers, make_config, pattern_sha256, simple_get

HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]


@pytest.fixture
def gw(origin, torii):
    return torii(make_config(origin.port))


def test_request_hop_by_hop_headers_not_forwarded(gw):
    sent = {
        "Connection": "keep-alive, X-Secret, x-other",
        "Keep-Alive": "timeout=5, max=1000",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "X-Trail",
        "Upgrade": "h2c",
        "X-Secret": "s3cret",
        "X-Other": "other",
        "X-Normal": "kept",
    }
    r = simple_get(gw.port, "/echo", headers=sent)
    assert r.status == 200
    got = echo_headers(r)
    names = [k.lower() for k, _ in got]
    assert "x-secret" not in names, got
    assert "x-other" not in names, got
    assert echo_header(r, "X-Normal") == ["kept"]
    for name in HOP_BY_HOP:
        client_value = [v for k, v in sent.items() if k.lower() == name][0]
        assert client_value not in echo_header(r, name), f"client's {name} forwarded: {got}"
    for v in echo_header(r, "connection"):
        assert "secret" not in v.lower() and "other" not in v.lower(), got
    # the spec: none of these reach the origin at all
    leaked = [k for k, _ in got if k.lower() in HOP_BY_HOP]
    assert not leaked, f"hop-by-hop headers reached the origin: {got}"


def test_connection_named_header_not_forwarded(gw):
    r = simple_get(gw.port, "/echo", headers={"Connection": "X-Secret", "X-Secret": "1", "X-Public": "2"})
    assert r.status == 200
    assert echo_header(r, "X-Secret") == []
    assert echo_header(r, "X-Public") == ["2"]


def test_x_forwarded_for_appended(gw):
    r = simple_get(gw.port, "/echo", headers={"X-Forwarded-For": "1.2.3.4"})
    assert echo_header(r, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]


def test_x_forwarded_for_created(gw):
    r = simple_get(gw.port, "/echo")
    assert echo_header(r, "X-Forwarded-For") == ["127.0.0.1"]


def test_x_forwarded_proto_and_host(gw):
    r = simple_get(gw.port, "/echo", host="shop.example.test:8080")
    assert echo_header(r, "X-Forwarded-Proto") == ["http"]
    assert echo_header(r, "X-Forwarded-Host") == ["shop.example.test:8080"]


def test_via_contains_torii(gw):
    r = simple_get(gw.port, "/echo")
    vias = echo_header(r, "Via")
    assert vias and any("torii" in v.lower() for v in vias), echo_headers(r)


def test_request_id_kept_and_returned(gw):
    rid = "req-abc-123_XYZ.7"
    r = simple_get(gw.port, "/echo", headers={"X-Request-Id": rid})
    assert echo_header(r, "X-Request-Id") == [rid]
    assert r.header_all("X-Request-Id") == [rid]


def test_request_id_generated_and_returned(gw):
    ids = []
    for _ in range(2):
        r = simple_get(gw.port, "/echo")
        seen = echo_header(r, "X-Request-Id")
        assert len(seen) == 1 and seen[0].strip(), echo_headers(r)
        assert r.header_all("X-Request-Id") == seen
        ids.append(seen[0])
    assert ids[0] != ids[1], "generated request ids must differ"


def test_insane_request_id_replaced(gw):
    bad = "has spaces and <angle> brackets " + "z" * 400
    r = simple_get(gw.port, "/echo", headers={"X-Request-Id": bad})
    assert r.status == 200
    seen = echo_header(r, "X-Request-Id")
    assert len(seen) == 1 and seen[0] != bad and seen[0].strip(), seen
    assert r.header_all("X-Request-Id") == seen


def test_response_hop_by_hop_headers_removed(gw):
    params = [("set", "Connection: X-Foo"), ("set", "X-Foo: 1"), ("set", "Keep-Alive: timeout=77, max=5"),
              ("set", "Proxy-Connection: keep-alive"), ("set", "X-Keep: yes")]
    r = HTTP.get(gw.url + "/headers", params=params, timeout=5)
    assert r.status_code == 200
    assert r.headers.get("X-Keep") == "yes"
    assert "X-Foo" not in r.headers, dict(r.headers)
    assert r.headers.get("Keep-Alive") != "timeout=77, max=5", dict(r.headers)
    assert "Proxy-Connection" not in r.headers, dict(r.headers)
    assert "x-foo" not in r.headers.get("Connection", "").lower(), dict(r.headers)


@pytest.mark.parametrize("target,size", [
    ("/bytes/3000000", 3_000_000),
    ("/chunked?size=3000000&chunks=37", 3_000_000),
    ("/close-delimited?size=3000000", 3_000_000),
], ids=["content-length", "chunked", "close-delimited"])
def test_upstream_body_relayed_byte_exact(gw, target, size):
    with HttpConn(gw.port, timeout=20) as c:
        c.request("GET", target)
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == size
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(size)
        assert r.header("X-Body-Sha256") == pattern_sha256(size)
        if not r.close_delimited:
            # framed response to the client: the connection must still work
            c.request("GET", "/echo?after=1")
            assert c.read_response().json()["query"] == "after=1"


@pytest.mark.parametrize("method,target,status", [
    ("HEAD", "/bytes/5000", 200),
    ("GET", "/status/204", 204),
    ("GET", "/status/304", 304),
    ("GET", "/status/304?cl=1234", 304),
], ids=["head", "204", "304", "304-with-content-length"])
def test_bodiless_response_keeps_connection_usable(gw, method, target, status):
    with HttpConn(gw.port) as c:
        c.request(method, target)
        r = c.read_response(method=method)
        assert r.status == status
        if method == "HEAD":
            assert r.header("Content-Length") == "5000"
        if status == 204:
            assert r.header("Content-Length") in (None, "0")
            assert r.header("Transfer-Encoding") is None
        c.request("GET", "/echo?next=1")
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.json()["query"] == "next=1"
        assert c.buf == b"", f"stray bytes after the response: {c.buf[:100]!r}"
        assert c.is_open_now()

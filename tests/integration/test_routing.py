"""Spec point 1: basic proxying, 404 for unmatched routes, host/prefix routing, round robin."""

import hashlib
import os

from helpers import HTTP, make_config, route, simple_get, upstream


def test_get_proxied(origin, torii):
    t = torii(make_config(origin.port))
    r = HTTP.get(f"{t.url}/echo?a=1&b=two", timeout=5)
    assert r.status_code == 200
    assert r.headers.get("X-Origin-Name") == "origin"
    doc = r.json()
    assert doc["method"] == "GET"
    assert doc["path"] == "/echo"
    assert doc["query"] == "a=1&b=two"
    assert origin.stats()["paths"].get("/echo") == 1


def test_post_proxied(origin, torii):
    t = torii(make_config(origin.port))
    body = os.urandom(200_000)
    r = HTTP.post(f"{t.url}/echo", data=body, timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["method"] == "POST"
    assert doc["body_length"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_demo_page(origin, torii):
    t = torii(make_config(origin.port))
    r = HTTP.get(t.url + "/", timeout=5)
    assert r.status_code == 200
    assert "Hello from the Torii demo origin" in r.text


def test_404_when_no_prefix_matches(origin, torii):
    t = torii(make_config(origin.port, routes=[route("app", path_prefix="/echo")]))
    r = simple_get(t.port, "/other/echo")
    assert r.status == 404
    assert r.header("X-Origin-Name") is None, "404 must come from the gateway, not the origin"
    assert simple_get(t.port, "/echo").status == 200
    assert origin.stats()["total"] == 1


def test_404_when_no_host_matches(origin, torii):
    t = torii(make_config(origin.port, routes=[route("app", host="only.example.com")]))
    r = simple_get(t.port, "/echo", host="else.example.com")
    assert r.status == 404
    assert r.header("X-Origin-Name") is None
    ok = simple_get(t.port, "/echo", host="only.example.com")
    assert ok.status == 200 and ok.header("X-Origin-Name") == "origin"
    assert origin.stats()["total"] == 1


def test_404_when_no_method_matches(origin, torii):
    t = torii(make_config(origin.port, routes=[route("app", methods=["GET"])]))
    r = simple_get(t.port, "/echo", method="POST", body=b"hello")
    assert r.status == 404
    assert r.header("X-Origin-Name") is None
    assert simple_get(t.port, "/echo").status == 200
    assert origin.stats()["requests"].get("POST /echo") is None


def _two_origins(origin_factory):
    return origin_factory("A"), origin_factory("B")


def test_exact_host_routing(origin_factory, torii):
    a, b = _two_origins(origin_factory)
    cfg = make_config(
        {"a": upstream(a.port), "b": upstream(b.port)},
        routes=[route("b", host="*"), route("a", host="api.example.com")],
    )
    t = torii(cfg)
    assert simple_get(t.port, "/echo", host="api.example.com").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo", host="API.Example.COM").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo", host="www.example.com").header("X-Origin-Name") == "B"
    assert simple_get(t.port, "/echo", host="api.example.com.evil").header("X-Origin-Name") == "B"


def test_wildcard_host_routing(origin_factory, torii):
    a, b = _two_origins(origin_factory)
    cfg = make_config(
        {"a": upstream(a.port), "b": upstream(b.port)},
        routes=[route("a", host="*.example.com"), route("b", host="*")],
    )
    t = torii(cfg)
    assert simple_get(t.port, "/echo", host="foo.example.com").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo", host="a.b.example.com").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo", host="foo.example.org").header("X-Origin-Name") == "B"
    assert simple_get(t.port, "/echo", host="fooexample.com").header("X-Origin-Name") == "B"


def test_wildcard_host_only_no_fallback_404(origin, torii):
    t = torii(make_config(origin.port, routes=[route("app", host="*.example.com")]))
    assert simple_get(t.port, "/echo", host="x.example.com").status == 200
    assert simple_get(t.port, "/echo", host="x.example.net").status == 404


def test_longest_prefix_wins(origin_factory, torii):
    a, b = _two_origins(origin_factory)
    cfg = make_config(
        {"a": upstream(a.port), "b": upstream(b.port)},
        # deliberately not ordered by length: the longest match must win, not the first
        routes=[route("b", path_prefix="/"), route("b", path_prefix="/echo/v2"), route("a", path_prefix="/echo")],
    )
    t = torii(cfg)
    assert simple_get(t.port, "/echo").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo/x").header("X-Origin-Name") == "A"
    assert simple_get(t.port, "/echo/v2/x").header("X-Origin-Name") == "B"
    assert simple_get(t.port, "/count").header("X-Origin-Name") == "B"


def test_round_robin_across_servers(origin_factory, torii):
    a, b = _two_origins(origin_factory)
    t = torii(make_config({"app": upstream(a.port, b.port)}, workers=1))
    names = [simple_get(t.port, "/echo").header("X-Origin-Name") for _ in range(10)]
    assert names.count("A") >= 3 and names.count("B") >= 3, names
    assert a.stats()["total"] + b.stats()["total"] == 10

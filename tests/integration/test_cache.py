"""The in-memory response cache: Cache-Status (RFC 9211), what is stored and
for how long, validation, stale serving, keys, coalescing, pre-warm and
refresh-ahead, reload, purge on the admin listener and the memory budget.

Most tests share one gateway per section (module-scoped, see `gw_a` and
`gw_b`); each test uses its own URLs, so their entries never meet. The cache
is per worker, so `gw_a` runs one worker: a second request is a hit only if
it reaches the same worker.

Timing: the origin's Date has one-second resolution, so a response stored with
max-age=N can have an apparent age of up to 1 s. A "still fresh" check is
therefore only made with N >= 2 right after the store, and "expired" means
at least N + 0.2 s after it.
"""

import concurrent.futures
import contextlib
import email.utils
import json
import os
import signal
import threading
import time

import pytest

from conftest import Origin, Torii
from helpers import (
    HTTP,
    HttpConn,
    admin_port,
    make_config,
    pattern_bytes,
    route,
    simple_get,
    upstream,
    vm_rss_kib,
    wait_for,
)

TOKEN = "cache-purge-token-0123456789"  # the admin token must have >= 16 characters


# --------------------------------------------------------------------------- helpers

class CacheStatus:
    """The `torii` member of a Cache-Status field: `torii; hit; ttl=5` ->
    hit=True, ttl=5; `torii; fwd=miss; stored` -> fwd="miss", stored=True."""

    def __init__(self, resp):
        raw = resp.header("Cache-Status")
        assert raw is not None, f"no Cache-Status header: {resp!r}"
        assert raw.startswith("torii; "), f"Cache-Status must start with 'torii; ': {raw!r}"
        self.raw = raw
        self.params = {}
        for part in raw.split(",")[0].split(";")[1:]:
            k, sep, v = part.strip().partition("=")
            self.params[k.strip().lower()] = v.strip().strip('"') if sep else True

    def get(self, name):
        return self.params.get(name)

    @property
    def hit(self):
        return self.params.get("hit") is True

    @property
    def fwd(self):
        return self.params.get("fwd")

    @property
    def fwd_status(self):
        return self.params.get("fwd-status")

    @property
    def stored(self):
        return self.params.get("stored") is True

    @property
    def collapsed(self):
        return self.params.get("collapsed") is True

    @property
    def detail(self):
        return self.params.get("detail")

    @property
    def ttl(self):
        v = self.params.get("ttl")
        return None if v is None else int(v)

    @property
    def fresh_hit(self):
        return self.hit and self.fwd is None and self.detail is None and (self.ttl or 0) >= 0

    def __repr__(self):
        return f"<Cache-Status {self.raw!r}>"


def cs(resp):
    return CacheStatus(resp)


def age(resp):
    v = resp.header("Age")
    assert v is not None and v.isdigit(), f"want an Age header with delta-seconds: {resp!r}"
    return int(v)


def get(port, target, headers=None, method="GET", host=None, timeout=5.0, body=b""):
    """One request on a fresh connection, Host 127.0.0.1:<port> unless given."""
    return simple_get(port, target, headers=headers, host=host or f"127.0.0.1:{port}",
                      timeout=timeout, method=method, body=body)


def origin_count(origin, target):
    """How many requests for exactly this path+query the origin has seen."""
    return origin.stats()["urls"].get(target, 0)


@contextlib.contextmanager
def origin_fault(origin, prefix, mode, seconds=0):
    r = HTTP.post(origin.url + "/control/fail", json={"prefix": prefix, "mode": mode, "seconds": seconds},
                  timeout=5)
    assert r.status_code == 200, r.text
    try:
        yield
    finally:
        HTTP.post(origin.url + "/control/fail", json={"prefix": prefix, "mode": "off"}, timeout=5)


def admin_call(port, path="/cache/purge", doc=None, token=TOKEN, method="POST", timeout=5.0):
    """One request to the admin listener; returns the Response (it closes the connection)."""
    headers = {}
    body = b""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if doc is not None:
        body = json.dumps(doc).encode()
        headers["Content-Type"] = "application/json"
    with HttpConn(port, timeout=timeout) as c:
        c.request(method, path, headers=headers, body=body, host=f"127.0.0.1:{port}")
        return c.read_response(method=method)


def purge(gw, doc, expect_status=200):
    r = admin_call(gw.admin, doc=doc)
    assert r.status == expect_status, r
    return r.json() if expect_status == 200 else r


def cache_route(prefix, upstream_name="app", host="*", **cache):
    return {"match": {"host": host, "path_prefix": prefix}, "upstream": upstream_name, "cache": cache}


def concurrent_gets(port, target, n, host=None, timeout=10.0):
    """n clients, each on its own connection, send the same GET at (nearly) the
    same moment. Returns a list of Responses (or exceptions)."""
    barrier = threading.Barrier(n, timeout=timeout)
    results = [None] * n

    def one(i):
        try:
            with HttpConn(port, timeout=timeout) as c:
                barrier.wait()
                c.request("GET", target, host=host or f"127.0.0.1:{port}")
                results[i] = c.read_response()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout + 5)
    return results


class Gateway:
    def __init__(self, origin, t):
        self.origin = origin
        self.t = t
        self.port = t.port
        self.admin = None

    def count(self, target):
        return origin_count(self.origin, target)

    def get(self, target, **kw):
        return get(self.port, target, **kw)


@contextlib.contextmanager
def running_gateway(cfg, tmp_dir, origin):
    """A module-scoped Torii (the `torii` fixture is per test)."""
    t = Torii(cfg, str(tmp_dir / "torii.json"))
    try:
        t.wait_ready()
        gw = Gateway(origin, t)
        if "admin" in cfg:
            gw.admin = admin_port(t)
        yield gw
    finally:
        t.stop()
        rep = t.sanitizer_report()
        if rep:
            pytest.fail(f"sanitizer error in torii pid {t.pid}:\n{rep}")


# --------------------------------------------------------------------------- gateway A: one worker

def _config_a(origin_port):
    upstreams = {
        "app": upstream(origin_port, response_timeout="10s"),
        "slow": upstream(origin_port, response_timeout="500ms"),
    }
    routes = [
        route("app"),  # no cache
        cache_route("/cache/", ttl="2s"),
        cache_route("/cache/p"),  # purge tests: the default ttl (60s)
        cache_route("/cache/sort/", key={"query": "sort"}),
        cache_route("/cache/drop/", key={"query": "drop"}),
        cache_route("/cache/ign/", key={"ignore_params": ["utm_source"]}),
        cache_route("/cache/hdr/", key={"headers": ["X-Tenant"]}),
        cache_route("/cache/cookie/", cache_set_cookie=True),
        cache_route("/cache/off/", enabled=False),
        cache_route("/cache/reval/", client_no_cache="revalidate"),
        cache_route("/cache/small/", max_object_size="4KiB"),
        cache_route("/cache/sie/", stale_if_error="60s"),
        cache_route("/cache/swr/", stale_while_revalidate="30s"),
        cache_route("/cache/slow/", upstream_name="slow"),
    ]
    return make_config(upstreams, routes, workers=1, admin={"address": "127.0.0.1:0", "token": TOKEN})


@pytest.fixture(scope="module")
def gw_a(tmp_path_factory):
    origin = Origin("origin")
    try:
        with running_gateway(_config_a(origin.port), tmp_path_factory.mktemp("gw_a"), origin) as gw:
            yield gw
    finally:
        origin.stop()


# -- basics

def test_miss_then_hit(gw_a):
    target = "/cache/basic/r?set=Cache-Control:max-age=60"
    first = gw_a.get(target)
    assert first.status == 200
    assert cs(first).fwd == "miss" and cs(first).stored, cs(first)
    assert first.json()["count"] == 1
    second = gw_a.get(target)
    assert second.status == 200
    s = cs(second)
    assert s.hit and s.fwd is None, s
    assert 55 <= s.ttl <= 60, s
    assert 0 <= age(second) <= 5
    assert second.body == first.body
    assert gw_a.count(target) == 1


def test_route_without_cache_has_no_cache_status(gw_a):
    r = gw_a.get("/echo")
    assert r.status == 200 and r.header("X-Origin-Name") == "origin"
    assert not r.has_header("Cache-Status"), r


def test_disabled_cache_forwards_everything(gw_a):
    target = "/cache/off/r?set=Cache-Control:max-age=60"
    for i in range(3):
        r = gw_a.get(target)
        assert r.status == 200
        assert not r.has_header("Cache-Status"), r
        assert r.json()["count"] == i + 1
    assert gw_a.count(target) == 3


FRESHNESS = {  # name: (query, fresh right after being stored)
    "max-age": ("set=Cache-Control:max-age=60", True),
    "max-age-0": ("set=Cache-Control:max-age=0", False),
    "s-maxage-wins": ("set=Cache-Control:max-age=0,s-maxage=60", True),  # s-maxage wins in a shared cache
    "s-maxage-0-wins": ("set=Cache-Control:max-age=60,s-maxage=0", False),
    "expires": ("expires=60", True),
    "expires-past": ("expires=-10", False),
    "max-age-over-expires": ("expires=-10&set=Cache-Control:max-age=60", True),
    "default-ttl": ("", True),  # the route's ttl (2s)
    "404-default-ttl": ("status=404", True),  # stored without explicit freshness, like 200
}


@pytest.mark.parametrize("name", list(FRESHNESS))
def test_freshness(gw_a, name):
    query, fresh = FRESHNESS[name]
    target = f"/cache/fresh/{name}/r" + (f"?{query}" if query else "")
    first = gw_a.get(target)
    assert cs(first).fwd == "miss", cs(first)
    second = gw_a.get(target)
    assert second.status == first.status
    if fresh:
        assert cs(second).fresh_hit, cs(second)
        assert second.body == first.body
        assert gw_a.count(target) == 1
    else:
        assert not cs(second).hit, cs(second)
        assert cs(second).fwd in ("stale", "miss"), cs(second)
        assert gw_a.count(target) == 2


@pytest.mark.parametrize("query, headers, reason", [
    ("set=Cache-Control:no-store", None, "no-store"),
    ("set=Cache-Control:private,max-age=60", None, "private"),
    ("set=Cache-Control:max-age=60&set=Set-Cookie:session=abc", None, "set-cookie"),
    ("vary=*&set=Cache-Control:max-age=60", None, "vary-star"),
    ("status=500", None, "status"),
    ("set=Cache-Control:max-age=60", {"Authorization": "Bearer abc"}, "authorization"),
], ids=["no-store", "private", "set-cookie", "vary-star", "status", "authorization"])
def test_not_stored(gw_a, query, headers, reason):
    target = f"/cache/nostore/{reason}/r?{query}"
    for i in range(2):
        r = gw_a.get(target, headers=headers)
        s = cs(r)
        assert s.fwd == "miss" and not s.stored and s.detail == reason, s
        assert r.json()["count"] == i + 1
    assert gw_a.count(target) == 2


def test_too_large_not_stored(gw_a):
    target = "/cache/small/big?size=8192&set=Cache-Control:max-age=60"
    for _ in range(2):
        r = gw_a.get(target)
        assert r.status == 200 and r.body == pattern_bytes(8192)
        s = cs(r)
        assert s.fwd == "miss" and not s.stored and s.detail == "too-large", s
    assert gw_a.count(target) == 2
    small = "/cache/small/ok?size=1024&set=Cache-Control:max-age=60"
    assert cs(gw_a.get(small)).stored
    assert cs(gw_a.get(small)).fresh_hit


@pytest.mark.parametrize("cc", ["public,max-age=60", "s-maxage=60", "max-age=60,must-revalidate"])
def test_authorization_stored_when_response_allows(gw_a, cc):
    target = f"/cache/auth/{cc.replace(',', '-').replace('=', '')}/r?set=Cache-Control:{cc}"
    first = gw_a.get(target, headers={"Authorization": "Bearer abc"})
    assert cs(first).fwd == "miss" and cs(first).stored, cs(first)
    second = gw_a.get(target, headers={"Authorization": "Bearer abc"})
    assert cs(second).fresh_hit, cs(second)
    assert gw_a.count(target) == 1


def test_post_is_forwarded_and_never_stored(gw_a):
    target = "/cache/post/r?set=Cache-Control:max-age=60"
    for i in range(2):
        r = gw_a.get(target, method="POST", body=b"payload")
        assert r.status == 200 and r.json()["method"] == "POST" and r.json()["count"] == i + 1
        s = cs(r)
        assert s.fwd == "method" and not s.stored and not s.hit, s
    # nothing was stored for the key: the first GET is a miss
    g = gw_a.get(target)
    assert cs(g).fwd == "miss", cs(g)
    assert gw_a.count(target) == 3


def test_head_answered_from_stored_get(gw_a):
    target = "/cache/head/r?size=1000&set=Cache-Control:max-age=60"
    with HttpConn(gw_a.port) as c:
        host = f"127.0.0.1:{gw_a.port}"
        c.request("GET", target, host=host)
        first = c.read_response()
        assert cs(first).stored and first.body == pattern_bytes(1000)
        c.request("HEAD", target, host=host)
        head = c.read_response(method="HEAD")
        assert head.status == 200
        assert cs(head).fresh_hit, cs(head)
        assert head.header("Content-Length") == "1000"
        assert head.header("X-Count") == "1"
        # No body followed the HEAD response: the next response parses cleanly.
        c.request("GET", target, host=host)
        again = c.read_response()
        assert again.status == 200 and cs(again).fresh_hit and again.body == pattern_bytes(1000)
    st = gw_a.origin.stats()
    assert st["urls"].get(target) == 1
    assert "HEAD /cache/head/r" not in st["requests"]


def test_head_miss_is_fetched_as_get_and_stored(gw_a):
    target = "/cache/headmiss/r?size=1500&set=Cache-Control:max-age=60"
    with HttpConn(gw_a.port) as c:
        host = f"127.0.0.1:{gw_a.port}"
        c.request("HEAD", target, host=host)
        head = c.read_response(method="HEAD")
        assert head.status == 200 and head.body == b""
        s = cs(head)
        assert s.fwd == "miss" and s.stored, s
        assert head.header("Content-Length") == "1500"
        # No body followed the HEAD response: the next one parses cleanly, from the cache.
        c.request("GET", target, host=host)
        r = c.read_response()
        assert r.status == 200 and cs(r).fresh_hit and r.body == pattern_bytes(1500), cs(r)
    st = gw_a.origin.stats()
    assert st["urls"].get(target) == 1
    assert st["requests"].get("GET /cache/headmiss/r") == 1
    assert "HEAD /cache/headmiss/r" not in st["requests"]


def test_origin_no_cache_is_revalidated_on_every_use(gw_a):
    target = "/cache/origin-no-cache/r?etag=nc1&set=Cache-Control:no-cache"
    first = gw_a.get(target)
    assert cs(first).stored, cs(first)
    for n in (2, 3):
        r = gw_a.get(target)
        assert r.status == 200
        s = cs(r)
        assert not s.hit and s.fwd_status == "304" and s.stored, s
        assert r.json()["count"] == 1, "the stored body, validated by the origin's 304"
        assert gw_a.count(target) == n


# -- Vary

def test_vary_keeps_one_variant_per_header_value(gw_a):
    target = "/cache/vary/r?vary=Accept-Language&set=Cache-Control:max-age=60"
    de = gw_a.get(target, headers={"Accept-Language": "de"})
    assert cs(de).fwd == "miss" and cs(de).stored, cs(de)
    assert de.json()["vary"] == {"Accept-Language": "de"}
    en = gw_a.get(target, headers={"Accept-Language": "en"})
    assert cs(en).fwd == "vary-miss" and cs(en).stored, cs(en)
    assert en.json()["vary"] == {"Accept-Language": "en"}
    for lang, count in (("de", 1), ("en", 2), ("de", 1), ("en", 2)):
        r = gw_a.get(target, headers={"Accept-Language": lang})
        assert cs(r).fresh_hit, (lang, cs(r))
        assert r.json()["vary"] == {"Accept-Language": lang} and r.json()["count"] == count
    assert gw_a.count(target) == 2


# -- conditional requests from clients

LM = 1_600_000_000


def _http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


@pytest.mark.parametrize("validator, matching, other", [
    ("etag=c1", {"If-None-Match": '"c1"'}, {"If-None-Match": '"zz"'}),
    (f"lm={LM}", {"If-Modified-Since": _http_date(LM + 5)}, {"If-Modified-Since": _http_date(LM - 10)}),
], ids=["if-none-match", "if-modified-since"])
def test_client_conditional_gets_304_from_cache(gw_a, validator, matching, other):
    target = f"/cache/cond/{validator.split('=')[0]}/r?{validator}&set=Cache-Control:max-age=60"
    first = gw_a.get(target)
    assert first.status == 200 and cs(first).stored
    with HttpConn(gw_a.port) as c:
        host = f"127.0.0.1:{gw_a.port}"
        c.request("GET", target, headers=matching, host=host)
        r = c.read_response()
        assert r.status == 304, r
        assert cs(r).hit, cs(r)
        if "etag" in validator:
            assert r.header("ETag") == '"c1"'
        assert r.body == b""
        # a non-matching conditional gets the full stored response (same connection:
        # also proves the 304 carried no body)
        c.request("GET", target, headers=other, host=host)
        full = c.read_response()
        assert full.status == 200 and cs(full).fresh_hit and full.body == first.body
    assert gw_a.count(target) == 1


# -- cache key options

@pytest.mark.parametrize("prefix, same", [("/cache/sort/", True), ("/cache/keyed/", False)])
def test_key_query_sort(gw_a, prefix, same):
    a = gw_a.get(prefix + "k?a=1&b=2&set=Cache-Control:max-age=60")
    assert cs(a).stored
    b = gw_a.get(prefix + "k?b=2&a=1&set=Cache-Control:max-age=60")
    if same:
        assert cs(b).fresh_hit, cs(b)
        assert b.body == a.body
        assert gw_a.count(prefix + "k?b=2&a=1&set=Cache-Control:max-age=60") == 0
    else:
        assert cs(b).fwd == "miss", cs(b)


def test_key_query_drop(gw_a):
    a = gw_a.get("/cache/drop/k?x=1")
    assert cs(a).stored
    b = gw_a.get("/cache/drop/k?x=2")
    assert cs(b).fresh_hit, cs(b)
    assert b.json()["query"] == "x=1"
    assert gw_a.count("/cache/drop/k?x=2") == 0


def test_key_ignore_params(gw_a):
    a = gw_a.get("/cache/ign/k?id=1&utm_source=mail")
    assert cs(a).stored
    b = gw_a.get("/cache/ign/k?id=1&utm_source=web")
    assert cs(b).fresh_hit, cs(b)
    assert b.json()["query"] == "id=1&utm_source=mail"
    c = gw_a.get("/cache/ign/k?id=2&utm_source=mail")
    assert cs(c).fwd == "miss", "other parameters stay in the key"


def test_key_headers(gw_a):
    target = "/cache/hdr/k"
    a = gw_a.get(target, headers={"X-Tenant": "a"})
    assert cs(a).fwd == "miss" and cs(a).stored
    b = gw_a.get(target, headers={"X-Tenant": "b"})
    assert cs(b).fwd == "miss" and cs(b).stored, cs(b)
    for tenant, count in (("a", 1), ("b", 2)):
        r = gw_a.get(target, headers={"X-Tenant": tenant})
        assert cs(r).fresh_hit and r.json()["count"] == count, (tenant, cs(r))
    assert gw_a.count(target) == 2


def test_cache_set_cookie_stores_set_cookie_responses(gw_a):
    target = "/cache/cookie/r?set=Set-Cookie:session=abc&set=Cache-Control:max-age=60"
    first = gw_a.get(target)
    assert cs(first).stored, cs(first)
    second = gw_a.get(target)
    assert cs(second).fresh_hit, cs(second)
    assert second.header("Set-Cookie") == "session=abc"
    assert gw_a.count(target) == 1


# -- client Cache-Control: no-cache

def test_client_no_cache_ignored_by_default(gw_a):
    target = "/cache/client-nc/r?set=Cache-Control:max-age=60"
    gw_a.get(target)
    r = gw_a.get(target, headers={"Cache-Control": "no-cache"})
    assert cs(r).fresh_hit, cs(r)
    assert gw_a.count(target) == 1


def test_client_no_cache_revalidate(gw_a):
    target = "/cache/reval/r?set=Cache-Control:max-age=60"
    assert gw_a.get(target).json()["count"] == 1
    r = gw_a.get(target, headers={"Cache-Control": "no-cache"})
    s = cs(r)
    assert s.fwd == "request" and s.stored, s
    assert r.json()["count"] == 2
    after = gw_a.get(target)
    assert cs(after).fresh_hit and after.json()["count"] == 2, "the refetched response replaced the entry"
    assert gw_a.count(target) == 2


# -- coalescing in one worker

def test_concurrent_misses_make_one_upstream_request(gw_a):
    target = "/cache/coalesce1/r?delay=0.5&size=3000&set=Cache-Control:max-age=60"
    results = concurrent_gets(gw_a.port, target, 20)
    errors = [r for r in results if not hasattr(r, "status")]
    assert not errors, errors[:3]
    assert all(r.status == 200 and r.body == pattern_bytes(3000) for r in results)
    statuses = [cs(r) for r in results]
    assert sum(1 for s in statuses if s.fwd == "miss" and s.stored) == 1, statuses
    assert all((s.fwd == "miss" and (s.stored or s.collapsed)) or s.fresh_hit for s in statuses), statuses
    assert any(s.collapsed for s in statuses), statuses
    assert gw_a.count(target) == 1


# -- expiry, revalidation and stale serving (entries primed together, one sleep)

STALE = {
    "refetch": "/cache/stale/refetch/r?set=Cache-Control:max-age=2",
    "default-ttl": "/cache/stale/ttl/r",  # the route's ttl is 2s
    "reval-etag": "/cache/stale/reval-etag/r?etag=v1&set=Cache-Control:max-age=2",
    "reval-lm": f"/cache/stale/reval-lm/r?lm={LM}&set=Cache-Control:max-age=2",
    "reval-client": "/cache/stale/reval-client/r?etag=v2&set=Cache-Control:max-age=2",
    "swr": "/cache/stale/swr/r?delay=1&set=Cache-Control:max-age=2,stale-while-revalidate=30",
    "swr-route": "/cache/swr/route/r?delay=1&set=Cache-Control:max-age=2",
    "swr-must-revalidate": "/cache/stale/swr-mr/r?set=Cache-Control:max-age=2,stale-while-revalidate=30,"
                           "must-revalidate",
    "sie-500": "/cache/stale/sie-500/r?set=Cache-Control:max-age=2,stale-if-error=60",
    "sie-close": "/cache/stale/sie-close/r?set=Cache-Control:max-age=2,stale-if-error=60",
    "sie-timeout": "/cache/slow/sie-timeout/r?set=Cache-Control:max-age=2,stale-if-error=60",
    "sie-route": "/cache/sie/route/r?set=Cache-Control:max-age=2",
    "sie-must-revalidate-500": "/cache/stale/sie-mr-500/r?set=Cache-Control:max-age=2,stale-if-error=60,"
                               "must-revalidate",
    "sie-must-revalidate-close": "/cache/stale/sie-mr-close/r?set=Cache-Control:max-age=2,stale-if-error=60,"
                                 "must-revalidate",
    "sie-s-maxage-500": "/cache/stale/sie-smax-500/r?set=Cache-Control:s-maxage=2,stale-if-error=60",
}


def _fault_prefix(target):
    return target.split("?")[0].rsplit("/", 1)[0] + "/"


@pytest.fixture(scope="module")
def stale_a(gw_a):
    """Every STALE entry stored, then left to expire (>= 2.2 s after the last store).
    Returns {name: first response}."""
    def prime(item):
        name, target = item
        return name, gw_a.get(target, timeout=10)

    with concurrent.futures.ThreadPoolExecutor(len(STALE)) as pool:
        firsts = dict(pool.map(prime, STALE.items()))
    stored_at = time.monotonic()
    for name, r in firsts.items():
        assert r.status == 200 and cs(r).fwd == "miss" and cs(r).stored, (name, r)
        assert r.json()["count"] == 1
    time.sleep(max(0.0, stored_at + 2.2 - time.monotonic()))
    return firsts


@pytest.mark.parametrize("name", ["refetch", "default-ttl"])
def test_expired_entry_refetched(gw_a, stale_a, name):
    target = STALE[name]
    r = gw_a.get(target)
    s = cs(r)
    assert r.status == 200 and s.fwd == "stale" and s.fwd_status == "200" and s.stored, s
    assert r.json()["count"] == 2
    again = gw_a.get(target)
    assert cs(again).fresh_hit and again.json()["count"] == 2
    assert gw_a.count(target) == 2


@pytest.mark.parametrize("name", ["reval-etag", "reval-lm"])
def test_expired_entry_revalidated_with_304(gw_a, stale_a, name):
    target = STALE[name]
    r = gw_a.get(target)
    s = cs(r)
    assert r.status == 200 and s.fwd == "stale" and s.fwd_status == "304" and s.stored, s
    assert r.body == stale_a[name].body, "the stored body, not a new one (count would be 2)"
    again = gw_a.get(target)
    assert cs(again).fresh_hit, "the 304 refreshed the entry"
    assert again.body == stale_a[name].body
    assert gw_a.count(target) == 2


def test_revalidation_passes_304_to_a_conditional_client(gw_a, stale_a):
    target = STALE["reval-client"]
    r = gw_a.get(target, headers={"If-None-Match": '"v2"'})
    assert r.status == 304, r
    s = cs(r)
    assert s.fwd == "stale" and s.fwd_status == "304", s
    assert r.body == b"" and r.header("ETag") == '"v2"'
    assert gw_a.count(target) == 2


@pytest.mark.parametrize("name", ["swr", "swr-route"])
def test_stale_while_revalidate(gw_a, stale_a, name):
    target = STALE[name]  # the origin takes 1 s to answer it
    start = time.monotonic()
    r = gw_a.get(target)
    took = time.monotonic() - start
    s = cs(r)
    assert r.status == 200 and s.hit and s.detail == "stale-while-revalidate" and s.ttl < 0, s
    assert age(r) >= 2
    assert r.json()["count"] == 1
    assert took < 0.6, f"the stale copy must not wait for the origin ({took:.2f}s)"
    wait_for(lambda: gw_a.count(target) == 2, 3, what="the background refresh reaching the origin")

    def refreshed():
        x = gw_a.get(target)
        return x if cs(x).fresh_hit else None

    fresh = wait_for(refreshed, 4, interval=0.1, what="a fresh hit after the background refresh")
    assert fresh.json()["count"] == 2
    assert gw_a.count(target) == 2, "one background refresh, not one per stale hit"


def test_must_revalidate_forbids_stale_while_revalidate(gw_a, stale_a):
    target = STALE["swr-must-revalidate"]
    r = gw_a.get(target)
    s = cs(r)
    assert r.status == 200 and not s.hit and s.fwd == "stale" and s.fwd_status == "200", s
    assert r.json()["count"] == 2


@pytest.mark.parametrize("name, mode, fwd_status", [
    ("sie-500", "500", "500"),
    ("sie-close", "close", None),
    ("sie-timeout", "delay", None),
    ("sie-route", "500", "500"),
])
def test_stale_if_error(gw_a, stale_a, name, mode, fwd_status):
    target = STALE[name]
    with origin_fault(gw_a.origin, _fault_prefix(target), mode, seconds=3):
        start = time.monotonic()
        r = gw_a.get(target, timeout=10)
        took = time.monotonic() - start
    assert r.status == 200, r
    assert r.body == stale_a[name].body
    s = cs(r)
    assert s.fwd == "stale" and s.detail == "stale-if-error" and s.ttl < 0, s
    assert s.fwd_status == fwd_status, s
    assert age(r) >= 2
    assert gw_a.count(target) >= 2, "the origin was asked"
    if mode == "delay":
        assert took < 2.5, f"the 500ms upstream response_timeout applies ({took:.2f}s)"


@pytest.mark.parametrize("name, mode, status", [
    ("sie-must-revalidate-500", "500", 500),
    ("sie-must-revalidate-close", "close", 502),
    ("sie-s-maxage-500", "500", 500),
])
def test_no_stale_if_error_when_forbidden(gw_a, stale_a, name, mode, status):
    target = STALE[name]
    with origin_fault(gw_a.origin, _fault_prefix(target), mode):
        r = gw_a.get(target)
    assert r.status == status, r
    assert r.body != stale_a[name].body
    if status == 500:
        assert b"injected failure" in r.body
    assert r.header("Cache-Status", "").find("stale-if-error") < 0, r


# -- purge on the admin listener (one worker)

def _host(gw):
    return f"127.0.0.1:{gw.port}"


def test_purge_exact_key(gw_a):
    t1, t2 = "/cache/p1?x=1", "/cache/p1?x=2"
    for t in (t1, t2):
        gw_a.get(t)
        assert cs(gw_a.get(t)).fresh_hit
    assert purge(gw_a, {"host": _host(gw_a), "path": t1}) == {"purged": 1, "workers": 1}
    r = gw_a.get(t1)
    assert cs(r).fwd == "miss" and cs(r).stored, cs(r)
    assert cs(gw_a.get(t2)).fresh_hit, "only the exact key is purged"
    assert purge(gw_a, {"host": _host(gw_a), "path": "/cache/p1?x=3"}) == {"purged": 0, "workers": 1}


def test_purge_prefix(gw_a):
    purged, kept = ["/cache/pp/a", "/cache/pp/b?q=1"], "/cache/pq/c"
    for t in purged + [kept]:
        gw_a.get(t)
        assert cs(gw_a.get(t)).fresh_hit
    # another host: nothing
    assert purge(gw_a, {"host": "other.test", "prefix": "/cache/pp/"}) == {"purged": 0, "workers": 1}
    assert cs(gw_a.get(purged[0])).fresh_hit
    assert purge(gw_a, {"prefix": "/cache/pp/"}) == {"purged": 2, "workers": 1}
    for t in purged:
        assert cs(gw_a.get(t)).fwd == "miss", t
    assert cs(gw_a.get(kept)).fresh_hit
    assert purge(gw_a, {"host": _host(gw_a), "prefix": "/cache/pq/"}) == {"purged": 1, "workers": 1}
    assert cs(gw_a.get(kept)).fwd == "miss"


@pytest.mark.parametrize("token, method, status", [
    (None, "POST", 401),
    ("wrong-token-0123456789abcdef", "POST", 401),
    (TOKEN, "GET", 405),
], ids=["no-token", "wrong-token", "get"])
def test_purge_refused(gw_a, token, method, status):
    target = f"/cache/purge-refused/{status}-{method}-{token is None}"
    gw_a.get(target)
    r = admin_call(gw_a.admin, doc={"prefix": "/cache/purge-refused/"}, token=token, method=method)
    assert r.status == status, r
    assert cs(gw_a.get(target)).fresh_hit, "nothing was purged"


def test_purge_is_not_on_the_public_port(gw_a):
    target = "/cache/public-purge/r"
    gw_a.get(target)
    r = gw_a.get("/cache/purge", method="POST", body=json.dumps({"prefix": "/cache/"}).encode(),
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.header("X-Origin-Name") == "origin", "proxied to the origin like any other path"
    assert r.json()["path"] == "/cache/purge"
    assert cs(gw_a.get(target)).fresh_hit


def test_purge_forbidden_without_configured_token(origin, torii):
    cfg = make_config(origin.port, workers=1, admin={"address": "127.0.0.1:0"},
                      routes=[cache_route("/cache/"), route("app")])
    t = torii(cfg)
    port = admin_port(t)
    get(t.port, "/cache/no-token/r")
    r = admin_call(port, doc={"prefix": "/cache/"}, token=TOKEN)
    assert r.status == 403, r
    assert cs(get(t.port, "/cache/no-token/r")).fresh_hit


# --------------------------------------------------------------------------- gateway B: two workers, pre-warm

PW_ANY = "/cache/pw/any?set=Cache-Control:max-age=600"
PW_HOST = "/cache/pw/host?set=Cache-Control:max-age=600"
PW_PURGE = "/cache/pw/purge?set=Cache-Control:max-age=600"
PW_REFRESH = "/cache/pw/refresh?set=Cache-Control:max-age=2"
PW_FAIL = "/cache/pwf/r?set=Cache-Control:max-age=2"
WORKERS_B = 2


@pytest.fixture(scope="module")
def gw_b(tmp_path_factory):
    origin = Origin("origin")
    routes = [
        cache_route("/cache/", prewarm=[PW_ANY, PW_PURGE, PW_REFRESH]),
        cache_route("/cache/pwf/", prewarm=[PW_FAIL], stale_if_error="60s"),
        cache_route("/cache/", host="api.test", prewarm=[PW_HOST]),
    ]
    cfg = make_config(origin.port, routes=routes, workers=WORKERS_B,
                      admin={"address": "127.0.0.1:0", "token": TOKEN})
    try:
        with running_gateway(cfg, tmp_path_factory.mktemp("gw_b"), origin) as gw:
            yield gw
    finally:
        origin.stop()


def test_coalescing_across_workers(gw_b):
    target = "/cache/coalesce2/r?delay=0.5&size=2000&set=Cache-Control:max-age=60"
    results = concurrent_gets(gw_b.port, target, 200, timeout=15)
    errors = [r for r in results if not hasattr(r, "status")]
    assert not errors, errors[:3]
    assert all(r.status == 200 for r in results), [r for r in results if r.status != 200][:3]
    assert len({r.body for r in results}) == 1 and results[0].body == pattern_bytes(2000)
    statuses = [cs(r) for r in results]
    assert sum(1 for s in statuses if s.stored) <= WORKERS_B, statuses
    assert any(s.collapsed for s in statuses)
    assert 1 <= gw_b.count(target) <= WORKERS_B


def test_prewarm_fetched_once_per_worker_and_hit(gw_b):
    # One fetch for the whole gateway: one worker fetched, the master handed
    # the copy to the other before it reported ready.
    assert gw_b.count(PW_ANY) == 1, "one pre-warm fetch for all workers, before 'worker ready'"
    for _ in range(10):
        r = gw_b.get(PW_ANY)  # Host 127.0.0.1:<port>, what the pre-warm used on a "*" route
        assert r.status == 200 and cs(r).fresh_hit, cs(r)
        assert r.json()["host"] == f"127.0.0.1:{gw_b.port}"
    assert gw_b.count(PW_ANY) == 1


def test_prewarm_uses_the_route_host(gw_b):
    assert gw_b.count(PW_HOST) == 1
    for _ in range(4):
        r = gw_b.get(PW_HOST, host="api.test")
        assert r.status == 200 and cs(r).fresh_hit, cs(r)
        assert r.json()["host"] == "api.test"
    assert gw_b.count(PW_HOST) == 1


def test_refresh_ahead_keeps_prewarmed_entry_fresh(gw_b):
    before = gw_b.count(PW_REFRESH)
    assert before >= 1
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = gw_b.get(PW_REFRESH)
        assert r.status == 200, r
        seen.append(cs(r))
        time.sleep(0.1)
    not_fresh = [s for s in seen if not s.fresh_hit]
    assert not not_fresh, f"{len(not_fresh)} of {len(seen)} were not fresh hits: {not_fresh[:5]}"
    refreshed = gw_b.count(PW_REFRESH) - before
    # max-age=2 and a Date of 1 s granularity: a refresh is due 0.6..1.7 s
    # after the previous one; one fetch per cycle for the whole gateway.
    assert refreshed >= 2, "refreshed ahead of expiry"
    assert refreshed <= 5 / 0.6 + 1, f"{refreshed} refreshes in 5 s: more than one per cycle"
    # Every worker serves the latest copy (shared through the master).
    counts = {gw_b.get(PW_REFRESH).json()["count"] for _ in range(8)}
    assert len(counts) == 1, counts


def test_refresh_failure_keeps_serving_cached_copy(gw_b):
    before = gw_b.count(PW_FAIL)
    results = []
    with origin_fault(gw_b.origin, "/cache/pwf/", "500"):
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            r = gw_b.get(PW_FAIL)
            results.append(r)
            time.sleep(0.1)
        during = gw_b.count(PW_FAIL)
    bad = [r for r in results if r.status != 200]
    assert not bad, bad[:3]
    for r in results:
        s = cs(r)
        assert s.hit or s.detail == "stale-if-error", s
        assert r.json()["path"] == "/cache/pwf/r"
    assert during > before, "refreshes (or requests) reached the failing origin"

    def fresh_again():
        x = gw_b.get(PW_FAIL)
        return x if x.status == 200 and cs(x).fresh_hit else None

    wait_for(fresh_again, 5, interval=0.1, what="a fresh hit once the origin recovers")


def test_purge_reaches_every_worker(gw_b):
    for _ in range(4):
        assert cs(gw_b.get(PW_PURGE)).fresh_hit
    assert purge(gw_b, {"host": f"127.0.0.1:{gw_b.port}", "path": PW_PURGE}) == \
        {"purged": WORKERS_B, "workers": WORKERS_B}
    r = gw_b.get(PW_PURGE)
    assert cs(r).fwd == "miss", cs(r)


# --------------------------------------------------------------------------- own gateways

def test_stale_if_error_when_origin_is_down(origin, torii):
    target = "/cache/down/r?set=Cache-Control:max-age=2,stale-if-error=60"
    t = torii(make_config(origin.port, workers=1, routes=[cache_route("/cache/"), route("app")]))
    first = get(t.port, target)
    assert cs(first).stored, cs(first)
    time.sleep(2.2)
    origin.stop()  # connections to it are now refused
    r = get(t.port, target)
    assert r.status == 200 and r.body == first.body, r
    s = cs(r)
    assert s.fwd == "stale" and s.detail == "stale-if-error" and s.fwd_status is None and s.ttl < 0, s
    assert age(r) >= 2


def test_gateway_error_on_a_cached_route_carries_cache_status(origin, torii):
    t = torii(make_config(origin.port, workers=1, routes=[cache_route("/cache/"), route("app")]))
    origin.stop()  # nothing stored, origin refusing connections
    r = get(t.port, "/cache/nothing/r")
    assert r.status == 502, r
    s = cs(r)
    assert s.fwd == "miss" and not s.stored and s.detail, s
    r = get(t.port, "/other")  # a route without a cache: no Cache-Status
    assert r.status == 502 and r.header("Cache-Status") is None


def test_reload_hands_prewarmed_entries_to_the_new_workers(origin, torii):
    target = "/cache/handover/r?set=Cache-Control:max-age=600"

    def config(level):
        return make_config(origin.port, workers=2, log_level=level, routes=[
            cache_route("/cache/", prewarm=[target]), route("app")])

    t = torii(config("info"))
    assert origin_count(origin, target) == 1
    old = set(t.worker_pids())
    tmp = t.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config("debug"), f)
    os.replace(tmp, t.config_path)
    os.kill(t.pid, signal.SIGHUP)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "configuration reloaded"], 10,
                   "'configuration reloaded'")
    wait_for(lambda: not (set(t.worker_pids()) & old), 10, what="old workers gone")
    for _ in range(6):
        r = get(t.port, target)
        assert r.status == 200 and cs(r).fresh_hit, cs(r)
    # The new generation took the master's copy: no request to the origin.
    assert origin_count(origin, target) == 1


def test_reload_keeps_prewarmed_entries_warm(origin, torii):
    target = "/cache/reload/r?set=Cache-Control:max-age=600"

    def config(tag):
        return make_config(origin.port, workers=2, routes=[
            dict(cache_route("/cache/", prewarm=[target]), name="cached", response_headers={"X-Config": tag}),
            route("app"),
        ])

    t = torii(config("a"))
    old = set(t.worker_pids())
    results = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                r = get(t.port, target)
                results.append((time.monotonic(), r.status, r.header("Cache-Status")))
            except Exception as e:  # noqa: BLE001 - every failure counts
                results.append((time.monotonic(), None, repr(e)))
            time.sleep(0.01)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    try:
        time.sleep(0.3)
        tmp = t.config_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config("b"), f)
        os.replace(tmp, t.config_path)
        os.kill(t.pid, signal.SIGHUP)
        t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "configuration reloaded"], 10,
                       "'configuration reloaded'")
        wait_for(lambda: not (set(t.worker_pids()) & old), 10, what="old workers gone")
        after = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(10)
    assert len(results) > 20
    bad = [x for x in results if x[1] != 200 or not (x[2] or "").startswith("torii; hit")]
    assert not bad, f"{len(bad)} of {len(results)} not hits: {bad[:5]}"
    assert sum(1 for x in results if x[0] > after) >= 5, "the new workers answered too"
    # The route's headers changed: the new workers fetched their own copy
    # (one for both) instead of serving one made under the old config.
    assert get(t.port, target).header("X-Config") == "b"
    assert origin_count(origin, target) == 2


def test_memory_budget_bounds_rss_and_evicts(origin, torii):
    cfg = make_config(origin.port, workers=1, cache={"memory": "4MiB"},
                      routes=[cache_route("/cache/mem/", max_object_size="64KiB"), route("app")])
    # Under ASan, freed memory waits in a quarantine (256 MiB by default)
    # before reuse, which would hide what this test measures; no effect on
    # an uninstrumented binary.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(
        x for x in (env.get("ASAN_OPTIONS", ""), "quarantine_size_mb=0", "thread_local_quarantine_size_kb=0") if x)
    t = torii(cfg, env=env)
    (worker,) = t.worker_pids()
    host = f"127.0.0.1:{t.port}"
    n, size = 3000, 16384
    with HttpConn(t.port, timeout=10) as c:
        for _ in range(50):  # warm up buffers through an uncached route
            c.request("GET", f"/bytes/{size}", host=host)
            assert c.read_response().status == 200
        rss_before = vm_rss_kib(worker)
        for i in range(n):
            c.request("GET", f"/cache/mem/{i}?size={size}", host=host)
            r = c.read_response()
            assert r.status == 200 and len(r.body) == size, r
        rss_after = vm_rss_kib(worker)
    grown_mib = (rss_after - rss_before) / 1024
    print(f"worker RSS {rss_before} KiB -> {rss_after} KiB (+{grown_mib:.1f} MiB) after {n * size >> 20} MiB")
    assert grown_mib < 4 + 16, f"RSS grew by {grown_mib:.1f} MiB with a 4 MiB cache"
    for i in range(n - 5, n):
        r = get(t.port, f"/cache/mem/{i}?size={size}")
        assert cs(r).fresh_hit, (i, cs(r))
    for i in range(5):
        r = get(t.port, f"/cache/mem/{i}?size={size}")
        assert cs(r).fwd == "miss", (i, cs(r))
    assert origin_count(origin, f"/cache/mem/{n - 1}?size={size}") == 1

"""Gateway policies on upstreams and routes (issue 7), against real origins:
circuit breaking (max_requests, max_pending) with fast 503s and Retry-After."""

import threading
import time

from helpers import HttpConn, admin_port, make_config, scrape, simple_get, upstream, wait_for


def gateway(torii, upstreams, routes=None, workers=1, **overrides):
    cfg = make_config(upstreams, routes, workers=workers, admin={"address": "127.0.0.1:0"}, **overrides)
    return torii(cfg)


def concurrent(port, targets, timeout=10):
    """Sends each target on its own connection at once; returns the responses in order."""
    results = [None] * len(targets)

    def one(i, target):
        try:
            results[i] = simple_get(port, target, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported by the caller's asserts
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(targets)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout + 5)
    return results


# --------------------------------------------------------------------------- circuit breaking

def test_max_requests_answers_503_at_once_with_retry_after(torii, origin):
    up = upstream(origin.port)
    up["max_requests"] = 2
    t = gateway(torii, {"app": up})
    start = time.monotonic()
    results = concurrent(t.port, [f"/delay?ms=1500&i={i}" for i in range(2)] + [], timeout=10)
    assert all(r.status == 200 for r in results), results
    # While two slow requests are in flight, more are refused at once.
    slow = threading.Thread(target=concurrent, args=(t.port, ["/delay?ms=1500&a=1", "/delay?ms=1500&a=2"]))
    slow.start()
    wait_for(lambda: origin.stats()["in_flight"].get("/delay", 0) == 2, 5, what="two requests in flight")
    quick = time.monotonic()
    r = simple_get(t.port, "/echo")
    assert r.status == 503 and r.header("Retry-After") == "1", r
    assert time.monotonic() - quick < 1.0, "the 503 was not immediate"
    slow.join(10)
    assert simple_get(t.port, "/echo").status == 200, "the cap freed up after the responses"
    m = scrape(admin_port(t))
    assert m.sum("torii_upstream_rejected_total", upstream="app", reason="max_requests") == 1
    assert time.monotonic() - start < 10


def test_max_pending_rejections_are_counted(torii, origin):
    t = gateway(torii, {"app": upstream(origin.port, max_connections=1, max_pending=0)})
    slow = threading.Thread(target=concurrent, args=(t.port, ["/delay?ms=1000"]))
    slow.start()
    wait_for(lambda: origin.stats()["in_flight"].get("/delay", 0) == 1, 5, what="the slow request in flight")
    r = simple_get(t.port, "/echo")
    assert r.status == 503 and r.header("Retry-After") == "1", r
    slow.join(10)
    m = scrape(admin_port(t))
    assert m.sum("torii_upstream_rejected_total", upstream="app", reason="max_pending") == 1
    assert m.sum("torii_upstream_rejected_total", upstream="app", reason="max_requests") == 0


def test_server_up_counts_the_workers_that_may_use_each_server(torii, origin):
    t = gateway(torii, {"app": upstream(origin.port)}, workers=2)
    m = scrape(admin_port(t))
    assert m.sum("torii_upstream_server_up", upstream="app", server=f"127.0.0.1:{origin.port}") == 2


# --------------------------------------------------------------------------- route timeouts

def timed_route(name, prefix, **timeouts):
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": "app"}
    if timeouts:
        r["timeouts"] = timeouts
    return r


def test_route_response_headers_timeout_overrides_the_upstreams(torii, origin):
    t = gateway(torii, {"app": upstream(origin.port, response_timeout="10s")},
                routes=[timed_route("fast", "/delay", response_headers="300ms"), timed_route("rest", "/")])
    start = time.monotonic()
    r = simple_get(t.port, "/delay?ms=2000")
    assert r.status == 504, r
    assert 0.25 <= time.monotonic() - start < 1.5
    # The same upstream on a route without the override waits as long as the upstream says.
    start = time.monotonic()
    r = simple_get(t.port, "/echo?delay=x")
    assert r.status == 200


def test_route_request_timeout_bounds_the_whole_response(torii, origin):
    t = gateway(torii, {"app": upstream(origin.port, response_timeout="10s")},
                routes=[timed_route("bounded", "/slow-body", request="500ms", idle="10s"), timed_route("rest", "/")])
    start = time.monotonic()
    with HttpConn(t.port, timeout=5) as c:
        c.request("GET", "/slow-body?ms=3000&size=16")
        head = c.read_head()
        assert head.status == 200, head
        assert c.closed_within(2.0), "the response was not cut at the request timeout"
    assert time.monotonic() - start < 2.5
    # Within the bound, the response is whole.
    r = simple_get(t.port, "/slow-body?ms=10&size=16")
    assert r.status == 200 and len(r.body) == 16


def test_route_connect_timeout(torii, backlog_upstream):
    assert backlog_upstream.fill(), "could not fill the listen backlog"
    assert backlog_upstream.connect_hangs(0.3), "connects to the filled listener still complete"
    t = gateway(torii, {"app": upstream(backlog_upstream.port, connect_timeout="10s")},
                routes=[timed_route("quick", "/", connect="400ms")])
    start = time.monotonic()
    assert simple_get(t.port, "/echo", timeout=15).status == 504
    assert 0.3 <= time.monotonic() - start < 2.0

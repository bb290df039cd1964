"""The admin listener: /metrics (Prometheus text format), /healthz, /readyz.

What is exported is documented in docs/METRICS.md; these tests check the
numbers against traffic we generate ourselves, that counters survive a worker
restart, that the exposition is valid for promtool and a real Prometheus
server, and that the admin listener answers while the workers are saturated
or one of them is stopped.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import (
    ADMIN_ANY_PORT,
    HTTP,
    HttpConn,
    Metrics,
    admin_port,
    admin_request,
    build_request,
    free_port,
    make_config,
    route,
    scrape,
    scrape_until,
    upstream,
    wait_for,
)

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
WRK = "/usr/bin/wrk"

ADMIN_DEADLINE = 1.0  # a liveness bound for one admin answer, not a speed target


def need(binary, package):
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} is missing (apt-get install -y {package})")


def gateway(torii, upstreams, routes=None, workers=2, **overrides):
    t = torii(make_config(upstreams, routes, workers=workers, admin=ADMIN_ANY_PORT, **overrides))
    t.admin = admin_port(t)
    return t


def named_route(name, upstream_name, host="*", path_prefix="/"):
    r = route(upstream_name, host=host, path_prefix=path_prefix)
    r["name"] = name
    return r


def get_on(conn, target, host="test.local", method="GET", body=b""):
    """One request on an open HttpConn; returns (response, request bytes sent)."""
    data = build_request(method, target, body=body, host=host)
    conn.send(data)
    return conn.read_response(method=method), len(data)


def requests_total(m, **labels):
    return m.sum("torii_requests_total", **labels)


def answered(n):
    """A scrape predicate: n requests counted, in the counter and in the histogram."""
    return lambda m: (m.sum("torii_requests_total") == n
                      and m.sum("torii_request_duration_seconds_count") == n)


def check_histograms(m):
    """Every histogram series: cumulative buckets, +Inf == _count, a _sum."""
    hists = [n for n, ty in m.types.items() if ty == "histogram"]
    checked = 0
    for name in hists:
        for labels, count in m.series(name + "_count"):
            buckets = sorted(
                ((float(d["le"]), v) for d, v in m.series(name + "_bucket", **labels)
                 if {k: x for k, x in d.items() if k != "le"} == labels),
                key=lambda b: b[0])
            assert buckets, f"{name}{labels}: _count without buckets"
            assert buckets[-1][0] == float("inf"), f"{name}{labels}: no +Inf bucket"
            assert buckets[-1][1] == count, f"{name}{labels}: +Inf bucket {buckets[-1][1]} != _count {count}"
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{name}{labels}: buckets not cumulative: {buckets}"
            assert m.get(name + "_sum", **labels) is not None, f"{name}{labels}: no _sum"
            checked += 1
    return checked


# --------------------------------------------------------------------------- 1. promtool


def test_promtool_accepts_exposition_after_mixed_traffic(torii, origin, raw_upstream, tmp_path):
    need(PROMTOOL, "prometheus")
    race = raw_upstream("ka-race-fin")  # 2nd request on each upstream connection: FIN -> retry
    t = gateway(
        torii,
        {"app": upstream(origin.port), "dead": upstream(free_port()), "race": upstream(race.port)},
        routes=[
            route("app", host="app.test"),  # unnamed: label "app.test/"
            named_route("dead-end", "dead", host="dead.test"),
            named_route("racy", "race", host="race.test"),
        ],
    )
    with HttpConn(t.port) as c:
        assert get_on(c, "/echo", host="app.test")[0].status == 200
        assert get_on(c, "/status/404", host="app.test")[0].status == 404
        assert get_on(c, "/echo", host="app.test", method="POST", body=b"x" * 100)[0].status == 200
        assert get_on(c, "/anything", host="nobody.test")[0].status == 404  # no route
    with HttpConn(t.port) as c:
        assert get_on(c, "/x", host="dead.test")[0].status == 502
    with HttpConn(t.port) as c:
        for i in range(4):
            assert get_on(c, f"/item/{i}", host="race.test")[0].status == 200
    with HttpConn(t.port) as c:
        c.send(b"GARBAGE\r\n\r\n")
        assert c.read_response().status == 400

    m = scrape_until(t.admin, answered(10))
    # the traffic shows up (so promtool checks a non-trivial exposition)
    assert m.get("torii_requests_total", route="app.test/", method="GET", status="2xx") == 1
    assert m.get("torii_requests_total", route="app.test/", method="GET", status="4xx") == 1
    assert m.get("torii_requests_total", route="app.test/", method="POST", status="2xx") == 1
    assert m.get("torii_requests_total", route="", method="GET", status="4xx") == 1
    assert m.get("torii_requests_total", route="dead-end", method="GET", status="5xx") == 1
    assert m.get("torii_requests_total", route="racy", method="GET", status="2xx") == 4
    assert m.get("torii_requests_total", route="", method="other", status="4xx") == 1, (  # before routing
        m.series("torii_requests_total"))
    retries = m.sum("torii_upstream_retries_total", upstream="race")
    assert retries >= 1, m.text
    # each retry follows one failed attempt on a reused connection; every request got a response head
    assert m.sum("torii_upstream_requests_total", upstream="race", outcome="reset") == retries
    assert m.sum("torii_upstream_requests_total", upstream="race", outcome="response") == 4
    assert check_histograms(m) >= 5

    path = tmp_path / "scrape.prom"
    path.write_text(m.text)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=m.text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"promtool check metrics failed ({path}):\n{r.stdout}{r.stderr}"
    assert not (r.stdout + r.stderr).strip(), f"promtool lint findings:\n{r.stdout}{r.stderr}"


# --------------------------------------------------------------------------- 2. counters


def test_counters_match_traffic(torii, origin):
    dead_port = free_port()
    t = gateway(
        torii,
        {"app": upstream(origin.port), "dead": upstream(dead_port)},
        routes=[route("app", path_prefix="/echo"), named_route("dead", "dead", host="dead.test")],
    )
    series = {"route": "*/echo", "method": "GET", "status": "2xx"}
    n_conns, per_conn = 12, 5
    sent_bytes = 0
    got_bytes = 0
    opened = 0

    # N GETs spread over 12 keep-alive connections (SO_REUSEPORT spreads them over both workers)
    conns = [HttpConn(t.port) for _ in range(n_conns)]
    opened += n_conns
    try:
        for i in range(per_conn):
            for j, c in enumerate(conns):
                r, n = get_on(c, f"/echo?c={j}&i={i}")
                assert r.status == 200, r
                sent_bytes += n
                got_bytes += len(r.raw_head) + len(r.body)
        n_gets = n_conns * per_conn
        # every connection has been accepted and is idle now: the gauge sees all of them
        m = scrape(t.admin)
        assert m.get("torii_connections_active") == n_conns, m.text
        assert m.sum("torii_upstream_connections", upstream="app", state="idle") > 0, m.text
    finally:
        for c in conns:
            c.close()

    # POSTs, 404s without a route, a 502 from an upstream with nothing listening
    n_posts = 3
    with HttpConn(t.port) as c:
        opened += 1
        for i in range(n_posts):
            r, n = get_on(c, "/echo/post", method="POST", body=b"p" * (1000 + i))
            assert r.status == 200 and r.json()["body_length"] == 1000 + i, r
            sent_bytes += n
            got_bytes += len(r.raw_head) + len(r.body)
    n_404 = 4
    for i in range(n_404):
        with HttpConn(t.port) as c:
            opened += 1
            r, n = get_on(c, f"/nowhere/{i}")
            assert r.status == 404, r
            sent_bytes += n
            got_bytes += len(r.raw_head) + len(r.body)
    with HttpConn(t.port) as c:
        opened += 1
        r, n = get_on(c, "/", host="dead.test")
        assert r.status == 502, r
        sent_bytes += n
        got_bytes += len(r.raw_head) + len(r.body)

    m = scrape_until(t.admin, answered(n_gets + n_posts + n_404 + 1))
    assert m.get("torii_requests_total", **series) == n_gets, m.text
    assert m.get("torii_request_duration_seconds_count", **series) == n_gets
    assert m.get("torii_request_duration_seconds_bucket", le="+Inf", **series) == n_gets
    assert m.get("torii_request_duration_seconds_sum", **series) > 0
    assert check_histograms(m) >= 4
    assert m.get("torii_requests_total", route="*/echo", method="POST", status="2xx") == n_posts
    assert m.get("torii_requests_total", route="", method="GET", status="4xx") == n_404
    assert m.get("torii_requests_total", route="dead", method="GET", status="5xx") == 1
    # nothing else was answered
    assert m.sum("torii_requests_total") == n_gets + n_posts + n_404 + 1, m.series("torii_requests_total")
    # series that never counted stay out
    assert m.get("torii_requests_total", route="*/echo", method="PUT", status="2xx") is None
    assert m.get("torii_request_duration_seconds_count", route="*/echo", method="PUT", status="2xx") is None

    app_server = f"127.0.0.1:{origin.port}"
    assert m.get("torii_upstream_requests_total", upstream="app", server=app_server,
                 outcome="response") == n_gets + n_posts
    assert m.get("torii_upstream_requests_total", upstream="dead", server=f"127.0.0.1:{dead_port}",
                 outcome="connect_error") == 1
    assert m.get("torii_upstream_requests_total", upstream="dead", server=f"127.0.0.1:{dead_port}",
                 outcome="response") is None
    assert m.get("torii_upstream_response_duration_seconds_count", upstream="app",
                 server=app_server) == n_gets + n_posts
    assert m.get("torii_upstream_connect_duration_seconds_count", upstream="app", server=app_server) >= 1
    assert m.get("torii_upstream_connect_duration_seconds_count", upstream="dead",
                 server=f"127.0.0.1:{dead_port}") is None  # never connected
    assert m.get("torii_connections_accepted_total") >= opened
    assert m.get("torii_connections_accepted_total") == opened, "connections counted twice?"
    assert m.get("torii_client_received_bytes_total") == sent_bytes
    assert m.get("torii_client_sent_bytes_total") == got_bytes
    assert m.sum("torii_upstream_connections", upstream="app", state="idle") > 0

    # every client is gone: the gauge returns to 0
    def active_zero():
        return scrape(t.admin).get("torii_connections_active") == 0
    wait_for(active_zero, 5, interval=0.05, what="torii_connections_active back to 0")


def test_master_metrics_at_start(torii, origin):
    t = gateway(torii, origin.port, workers=2)
    before = time.time()
    m = scrape(t.admin)
    assert m.get("torii_workers", state="running") == 2
    assert m.get("torii_workers_configured") == 2
    assert m.get("torii_worker_restarts_total") == 0
    assert m.get("torii_config_reloads_total", result="success") == 1
    assert m.get("torii_config_reloads_total", result="failure") == 0
    started = m.get("torii_config_last_reload_success_timestamp_seconds")
    assert started is not None and before - 60 <= started <= before + 1, started
    builds = m.series("torii_build_info")
    assert len(builds) == 1 and builds[0][1] == 1 and builds[0][0].get("version"), builds
    procs = {(d["process"], d["worker"]) for d, _ in m.series("torii_process_resident_memory_bytes")}
    assert procs == {("master", ""), ("worker", "0"), ("worker", "1")}, procs
    for d, v in m.series("torii_process_resident_memory_bytes"):
        assert v > 0, (d, v)
    for d, v in m.series("torii_process_open_fds"):
        assert v >= 3, (d, v)
    # master-only families and shared-memory families each appear once, typed
    for fam, ty in {"torii_requests_total": "counter", "torii_request_duration_seconds": "histogram",
                    "torii_connections_active": "gauge", "torii_workers": "gauge",
                    "torii_upstream_connections": "gauge"}.items():
        assert m.types.get(fam) == ty, (fam, m.types.get(fam))
        assert m.text.count(f"# TYPE {fam} ") == 1


def test_stats_disabled_keeps_master_metrics(torii, origin):
    t = gateway(torii, origin.port, workers=2, stats={"enabled": False})
    for i in range(3):
        with HttpConn(t.port) as c:
            assert get_on(c, f"/echo?i={i}")[0].status == 200
    m = scrape(t.admin)
    assert m.series("torii_requests_total") == [], m.series("torii_requests_total")
    assert m.get("torii_connections_accepted_total") is None
    assert m.get("torii_connections_active") == 0
    assert m.types.get("torii_requests_total") == "counter"  # the family is still announced
    assert m.get("torii_workers", state="running") == 2
    assert m.get("torii_config_reloads_total", result="success") == 1
    r, _ = admin_request(t.admin, "/readyz")
    assert r.status == 200, r


# --------------------------------------------------------------------------- 3. worker restart


def test_counters_monotonic_across_worker_restart(torii, origin):
    t = gateway(torii, origin.port, workers=2)
    # traffic, then idle keep-alive connections held open on both workers
    held = []

    def still_open():
        return [c for c in held if c.is_open_now(0.01)]
    try:
        for i in range(16):
            c = HttpConn(t.port)
            held.append(c)
            assert get_on(c, f"/echo?held={i}")[0].status == 200
        before = scrape_until(t.admin, answered(16))
        assert before.get("torii_connections_active") == len(held)
        counters_before = before.counters()
        assert before.sum("torii_requests_total") == 16

        n_ready = len(t.records("worker ready"))
        n_sched = len(t.records("worker respawn scheduled"))
        victim_index, victim = next(iter(sorted(t.ready_workers().items())))
        assert victim in t.worker_pids()
        os.kill(victim, signal.SIGKILL)

        # The master logs "worker respawn scheduled" after it zeroed the slot, and respawns
        # delay_ms later (100 ms for a worker that ran < 2 s). What we see before that is the
        # down window: only asserted when our answers provably came back inside it.
        sched = t.wait_records(
            lambda recs: [r for r in recs if r.get("msg") == "worker respawn scheduled"][n_sched:],
            5, "'worker respawn scheduled'")
        seen = time.monotonic()
        delay = int(sched[0]["delay_ms"]) / 1000.0
        down_ready, _ = admin_request(t.admin, "/readyz", timeout=2)
        down = scrape(t.admin, timeout=2)
        in_window = time.monotonic() - seen < delay - 0.02
        down_open = still_open()  # the survivor's clients stay open (keep-alive idle is 60 s)
        if in_window:
            assert down_ready.status == 503 and down_ready.body.startswith(b"not ready"), down_ready
            assert down.get("torii_workers", state="running") == 1, down.text
            assert down.get("torii_worker_restarts_total") == 1
            workers_sampled = {d["worker"] for d, _ in down.series("torii_process_open_fds", process="worker")}
            assert str(victim_index) not in workers_sampled, workers_sampled
            # the dead worker's gauges are zeroed: only the survivor's clients are counted
            assert down.get("torii_connections_active") == len(down_open), (
                down.get("torii_connections_active"), len(down_open))

        new = t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "worker ready"][n_ready:],
                             10, "the replacement's 'worker ready' line")
        assert int(new[0]["pid"]) != victim and new[0]["worker"] == str(victim_index)

        after = scrape(t.admin)
        for key, v in counters_before.items():
            assert key in after.samples, f"series {key} vanished after the restart"
            assert after.samples[key] >= v, f"{key} went down: {v} -> {after.samples[key]}"
        assert after.get("torii_worker_restarts_total") == 1
        assert after.get("torii_workers", state="running") == 2
        procs = {(d["process"], d["worker"]) for d, _ in after.series("torii_process_open_fds")}
        assert procs == {("master", ""), ("worker", "0"), ("worker", "1")}, procs

        # the dead worker's connection gauge was zeroed: only the survivor's connections count
        survivors = still_open()
        assert len(survivors) < len(held), "no client connection was on the killed worker"
        assert after.get("torii_connections_active") == len(survivors), (
            f"connections_active {after.get('torii_connections_active')} but {len(survivors)} "
            f"of {len(held)} client connections are still open")

        resp, _ = admin_request(t.admin, "/readyz")
        assert resp.status == 200, resp
        # the survivors and new connections keep counting on top of the old totals
        for c in survivors:
            assert get_on(c, "/echo?again=1")[0].status == 200
        for i in range(4):
            with HttpConn(t.port) as c:
                assert get_on(c, f"/echo?new={i}")[0].status == 200
        final = scrape_until(t.admin, answered(16 + len(survivors) + 4))
        assert final.sum("torii_requests_total") == 16 + len(survivors) + 4
    finally:
        for c in held:
            c.close()


# --------------------------------------------------------------------------- 4. endpoints


def test_admin_endpoints(torii, origin):
    t = gateway(torii, origin.port, workers=2)
    r, _ = admin_request(t.admin, "/healthz")
    assert r.status == 200 and r.body == b"ok\n", r
    r, _ = admin_request(t.admin, "/readyz")
    assert r.status == 200 and r.body.startswith(b"ready"), r
    r, _ = admin_request(t.admin, "/nope")
    assert r.status == 404, r
    r, _ = admin_request(t.admin, "/metrics", method="POST")
    assert r.status == 405, r
    allow = {m.strip() for m in (r.header("allow") or "").split(",") if m.strip()}
    assert allow == {"GET", "HEAD"}, f"405 without a correct Allow header (RFC 9110 15.5.6): {r.headers}"
    # absolute-form targets must be accepted too (RFC 9112 3.2.2)
    r, _ = admin_request(t.admin, f"http://127.0.0.1:{t.admin}/healthz")
    assert r.status == 200 and r.body == b"ok\n", r

    r, _ = admin_request(t.admin, "/metrics")
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("text/plain; version=0.0.4"), r.headers
    assert b"# TYPE torii_requests_total counter" in r.body
    r2, _ = admin_request(t.admin, "/metrics?name[]=torii_workers")  # a query string is ignored
    assert r2.status == 200 and b"torii_workers{" in r2.body

    h, _ = admin_request(t.admin, "/metrics", method="HEAD")
    assert h.status == 200, h
    assert h.body == b"", f"HEAD /metrics sent a body: {h.body[:200]!r}"
    assert int(h.header("content-length")) > 0

    # through the `requests` library as a scraper would
    rr = HTTP.get(f"http://127.0.0.1:{t.admin}/healthz", timeout=5)
    assert rr.status_code == 200 and rr.text == "ok\n"


def test_readyz_503_while_draining(torii, origin):
    t = gateway(torii, origin.port, workers=2, timeouts={"drain": "10s"})
    result = {}

    def slow():
        try:
            with HttpConn(t.port, timeout=10) as c:
                result["resp"] = get_on(c, "/delay?ms=2500")[0]
        except Exception as e:  # noqa: BLE001
            result["resp"] = e

    th = threading.Thread(target=slow)
    th.start()
    try:
        wait_for(lambda: origin.stats()["in_flight"].get("/delay"), 5, what="the slow request at the origin")
        t.send_signal(signal.SIGTERM)

        def readyz_503():
            r, _ = admin_request(t.admin, "/readyz", timeout=2)
            return r if r.status == 503 else None
        r = wait_for(readyz_503, 2, interval=0.05, what="/readyz 503 while draining")
        assert r.body.startswith(b"not ready"), r
        r, _ = admin_request(t.admin, "/healthz", timeout=2)
        assert r.status == 200, r
    finally:
        th.join(15)
    assert getattr(result.get("resp"), "status", result.get("resp")) == 200


# --------------------------------------------------------------------------- 5. a real Prometheus


def test_prometheus_server_scrapes_admin_listener(torii, origin, tmp_path):
    need(PROMETHEUS, "prometheus")
    t = gateway(torii, origin.port, workers=2)
    for i in range(5):
        with HttpConn(t.port) as c:
            assert get_on(c, f"/echo?i={i}")[0].status == 200

    web_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: torii\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{t.admin}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web_port}", "--storage.tsdb.retention.time=1h"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{web_port}/api/v1"

    def query(q):
        try:
            r = HTTP.get(f"{api}/query", params={"query": q}, timeout=2)
        except Exception:  # noqa: BLE001  (not up yet)
            return None
        if r.status_code != 200:
            return None
        return r.json()["data"]["result"]

    try:
        def up():
            res = query('up{job="torii"}')
            return res and res[0]["value"][1] == "1"
        last = {}

        def five_requests():
            last["reqs"] = query("torii_requests_total")
            return last["reqs"] if last["reqs"] and sum(float(x["value"][1]) for x in last["reqs"]) == 5 \
                else None
        try:
            wait_for(up, 20, interval=0.25, what='Prometheus to report up{job="torii"} == 1')
            reqs = wait_for(five_requests, 10, interval=0.25,
                            what="torii_requests_total series summing to 5 in Prometheus")
        except AssertionError as e:
            targets = None
            try:
                targets = HTTP.get(f"{api}/targets", timeout=2).text
            except Exception:  # noqa: BLE001
                pass
            log.flush()
            raise AssertionError(f"{e}\nlast torii_requests_total: {last.get('reqs')}\ntargets: {targets}\n"
                                 "prometheus log:\n"
                                 f"{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
        total = sum(float(s["value"][1]) for s in reqs)
        assert total == 5, reqs
        assert {s["metric"].get("route") for s in reqs} == {"*/"}
        assert query("torii_request_duration_seconds_bucket"), "histogram buckets not ingested"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


# --------------------------------------------------------------------------- 6. saturation


def test_metrics_answer_while_workers_are_saturated(torii, origin):
    """Two wrk runs at once: one proxied to the origin, one answered locally (404, no route), which
    keeps every worker busy. The master's admin listener must keep answering and counting."""
    need(WRK, "wrk")
    t = gateway(torii, origin.port, routes=[route("app", path_prefix="/bytes")], workers=2)
    duration, conns = 6, 32
    loads = {}
    try:
        for name, path in (("proxied", "/bytes/1024"), ("local", "/nothing")):
            loads[name] = subprocess.Popen(
                [WRK, "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
                 f"http://127.0.0.1:{t.port}{path}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True)

        def counts(m):
            return (requests_total(m, route="*/bytes", method="GET", status="2xx"),
                    requests_total(m, route="", method="GET", status="4xx"))
        # the load is on once the gateway counts both kinds of answers
        wait_for(lambda: all(counts(scrape(t.admin, timeout=ADMIN_DEADLINE))), 5, interval=0.1,
                 what="both loads to reach the gateway")
        samples = []
        while all(p.poll() is None for p in loads.values()) and len(samples) < 6:
            resp, took = admin_request(t.admin, "/metrics", timeout=ADMIN_DEADLINE)
            assert resp.status == 200, resp
            assert took < ADMIN_DEADLINE, f"/metrics took {took:.2f}s under load"
            samples.append((round(took, 3), counts(Metrics(resp.body.decode()))))
            r, took = admin_request(t.admin, "/readyz", timeout=ADMIN_DEADLINE)
            assert r.status == 200 and took < ADMIN_DEADLINE, (r, took)
            time.sleep(0.5)
        outs = {name: p.communicate(timeout=duration + 10)[0] for name, p in loads.items()}
    finally:
        for p in loads.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
    assert len(samples) >= 3, f"too few scrapes during the load: {samples}"
    for (_, a), (_, b) in zip(samples, samples[1:]):
        assert b[0] > a[0] and b[1] > a[1], f"requests_total did not increase between scrapes: {samples}"

    done = {}
    for name, out in outs.items():
        m = re.search(r"(\d+) requests in", out)
        assert m and int(m.group(1)) > 0, out
        done[name] = int(m.group(1))
    assert "Non-2xx" not in outs["proxied"], outs["proxied"]
    # each wrk connection has at most one request outstanding when wrk stops
    final = scrape_until(t.admin, lambda m: counts(m)[0] >= done["proxied"] and counts(m)[1] >= done["local"])
    proxied, local = counts(final)
    assert done["proxied"] <= proxied <= done["proxied"] + conns, (done, proxied, outs["proxied"])
    assert done["local"] <= local <= done["local"] + conns, (done, local, outs["local"])
    assert requests_total(final) == proxied + local, final.series("torii_requests_total")
    assert final.sum("torii_upstream_requests_total", outcome="response") >= proxied
    assert check_histograms(final) >= 2
    wait_for(lambda: scrape(t.admin).get("torii_connections_active") == 0, 5, interval=0.05,
             what="torii_connections_active back to 0 after wrk")


def test_metrics_answer_with_a_stopped_worker(torii, origin):
    t = gateway(torii, origin.port, workers=2)
    before = requests_total(scrape(t.admin))
    assert before == 0
    victim = t.worker_pids()[0]
    hung = []
    try:
        _stopped_worker_checks(t, victim, before, hung)
    finally:
        for c in hung:
            c.close()


def _stopped_worker_checks(t, victim, before, hung):
    os.kill(victim, signal.SIGSTOP)
    try:
        resp, took = admin_request(t.admin, "/metrics", timeout=ADMIN_DEADLINE)
        assert resp.status == 200 and took < ADMIN_DEADLINE, (resp, took)
        r, took = admin_request(t.admin, "/readyz", timeout=ADMIN_DEADLINE)
        assert r.status in (200, 503) and took < ADMIN_DEADLINE, (r, took)

        # new connections: those the kernel gives the stopped worker hang; the others are served
        served = 0
        for i in range(40):
            c = HttpConn(t.port, timeout=0.5)
            try:
                r, _ = get_on(c, f"/echo?try={i}")
                assert r.status == 200, r
                served += 1
                c.close()
            except socket.timeout:
                hung.append(c)  # closed only after SIGCONT: the stopped worker still owes it
            if served >= 5 and hung:
                break
        assert served >= 5, f"only {served} of {i + 1} requests served with one worker stopped"
        assert hung, f"precondition: none of {i + 1} new connections went to the stopped worker"

        resp, took = admin_request(t.admin, "/metrics", timeout=ADMIN_DEADLINE)
        assert resp.status == 200 and took < ADMIN_DEADLINE, (resp, took)
        # the stopped worker cannot count: the total moves by exactly what the live one served
        m = scrape_until(t.admin, answered(before + served))
        assert requests_total(m) == before + served, (served, m.series("torii_requests_total"))
        assert m.get("torii_workers", state="running") == 2
    finally:
        os.kill(victim, signal.SIGCONT)
    # the hung connections are served once the worker runs again
    for c in hung:
        r = c.read_response(timeout=5)
        assert r.status == 200, r
        served += 1
    m = scrape_until(t.admin, answered(before + served))
    assert requests_total(m) == before + served, m.series("torii_requests_total")
    r, _ = admin_request(t.admin, "/readyz")
    assert r.status == 200, r

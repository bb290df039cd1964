"""Access log (issue 3, point 4): JSON lines and combined format, buffered and
flushed by the workers, one line per request with the request's fields, and
SIGUSR1 reopening the file after logrotate moved it."""

import json
import os
import re
import signal

from helpers import make_config, route, simple_get, wait_for


def _lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [ln for ln in f.read().splitlines() if ln]
    except FileNotFoundError:
        return []


def _config(origin, path, fmt="json"):
    return make_config(origin.port, workers=2,
                       routes=[dict(route("app"), name="everything")],
                       access_log={"path": str(path), "format": fmt, "flush_interval": "100ms"})


def test_json_lines_one_per_request_with_fields(origin, torii, tmp_path):
    log = tmp_path / "access.log"
    t = torii(_config(origin, log))
    ids = []
    for i in range(20):
        r = simple_get(t.port, f"/echo?i={i}", headers={"User-Agent": "probe/1", "Referer": "http://r.example/"})
        assert r.status == 200
        ids.append(r.header("X-Request-Id"))
    r404 = simple_get(t.port, "/x", host="nowhere.example")  # still routed: catch-all
    assert r404.status == 404  # the origin's own 404 for an unknown path
    wait_for(lambda: len(_lines(log)) >= 21, 5, what="21 access log lines")
    records = [json.loads(ln) for ln in _lines(log)]
    assert len(records) == 21
    by_id = {rec["request_id"]: rec for rec in records}
    for i, rid in enumerate(ids):
        rec = by_id[rid]
        assert rec["method"] == "GET"
        assert rec["target"] == f"/echo?i={i}"
        assert rec["status"] == 200
        assert rec["protocol"] == "HTTP/1.1"
        assert rec["host"] == "test.local"
        assert rec["route"] == "everything"
        assert rec["client"] == "127.0.0.1"
        assert rec["upstream"] == f"127.0.0.1:{origin.port}"
        assert rec["upstream_ms"] >= 0 and rec["duration_ms"] >= rec["upstream_ms"] - 0.001
        assert rec["bytes_sent"] > 0 and rec["bytes_received"] > 0
        assert rec["user_agent"] == "probe/1" and rec["referer"] == "http://r.example/"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rec["time"]), rec["time"]
    assert any(rec["status"] == 404 and rec["host"] == "nowhere.example" for rec in records)


def test_local_replies_are_logged_without_upstream(origin, torii, tmp_path):
    log = tmp_path / "access.log"
    cfg = _config(origin, log)
    cfg["routes"] = [dict(route("app", path_prefix="/api/"), name="api")]
    t = torii(cfg)
    r = simple_get(t.port, "/not-routed")
    assert r.status == 404
    wait_for(lambda: len(_lines(log)) >= 1, 5, what="an access log line")
    (rec,) = [json.loads(ln) for ln in _lines(log)]
    assert rec["status"] == 404 and rec["route"] == "" and "upstream" not in rec
    assert rec["request_id"] == r.header("X-Request-Id")


def test_combined_format(origin, torii, tmp_path):
    log = tmp_path / "access.log"
    t = torii(_config(origin, log, fmt="combined"))
    r = simple_get(t.port, "/echo?q=1", headers={"User-Agent": "probe/2"})
    assert r.status == 200
    wait_for(lambda: len(_lines(log)) >= 1, 5, what="an access log line")
    (line,) = _lines(log)
    m = re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /echo\?q=1 HTTP/1\.1" 200 (\d+) '
        r'"-" "probe/2" rt=\d+\.\d{3} urt=\d+\.\d{3} rid=(\S+) route=everything', line)
    assert m, line
    assert int(m.group(1)) > 0
    assert m.group(2) == r.header("X-Request-Id")


def test_sigusr1_reopens_after_rotation(origin, torii, tmp_path):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    t = torii(_config(origin, log))
    for i in range(5):
        assert simple_get(t.port, f"/echo?before={i}").status == 200
    wait_for(lambda: len(_lines(log)) >= 5, 5, what="5 lines before rotation")
    os.rename(log, rotated)
    os.kill(t.pid, signal.SIGUSR1)
    # Both workers reopen; lines written meanwhile may still land in the old
    # file, so keep sending until the new file has lines of its own.
    sent = 0

    def new_file_has_lines():
        nonlocal sent
        assert simple_get(t.port, f"/echo?after={sent}").status == 200
        sent += 1
        return len(_lines(log)) > 0

    wait_for(new_file_has_lines, 5, interval=0.05, what="lines in the reopened file")
    wait_for(lambda: len(_lines(log)) + len(_lines(rotated)) >= 5 + sent, 5, what="every line written")
    old = [json.loads(ln)["target"] for ln in _lines(rotated)]
    new = [json.loads(ln)["target"] for ln in _lines(log)]
    assert sum(1 for x in old if "before=" in x) == 5
    assert all("after=" in x for x in new)
    assert len(old) + len(new) == 5 + sent
    assert any(r.get("msg") == "reopening log files" for r in t.records())


def test_cached_routes_log_their_cache_status(origin, torii, tmp_path):
    log = tmp_path / "access.log"
    cfg = make_config(origin.port, workers=1,
                      routes=[{"name": "cached", "match": {"host": "*", "path_prefix": "/cache/"},
                               "upstream": "app", "cache": {"ttl": "60s"}},
                              dict(route("app"), name="plain")],
                      access_log={"path": str(log), "format": "json", "flush_interval": "100ms"})
    t = torii(cfg)
    for _ in range(2):
        assert simple_get(t.port, "/cache/logged/r").status == 200
    assert simple_get(t.port, "/echo").status == 200
    wait_for(lambda: len(_lines(log)) >= 3, 5, what="3 access log lines")
    records = [json.loads(ln) for ln in _lines(log)]
    assert [r.get("cache") for r in records if r["route"] == "cached"] == ["miss", "hit"]
    assert all("cache" not in r for r in records if r["route"] == "plain")

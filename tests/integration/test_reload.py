"""Configuration reload on SIGHUP (issue 6): a valid new config starts a new
generation of workers on the same sockets and the old one drains; an invalid
one is refused with file, JSON path and reason while the running generation
keeps serving; under load, reloads cost no request."""

import http.client
import json
import os
import signal
import threading
import time

from helpers import admin_port, make_config, route, scrape, simple_get, wait_for


def _config(origin_port, tag, workers=2):
    cfg = make_config(origin_port, workers=workers,
                      routes=[dict(route("app"), name="app", response_headers={"X-Config": tag})],
                      admin={"address": "127.0.0.1:0"})
    cfg["timeouts"]["drain"] = "5s"
    return cfg


def _write(t, cfg):
    tmp = t.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, t.config_path)  # atomic: a reload never reads half a file


def _reloads(t, result):
    m = scrape(admin_port(t))
    return m.samples.get(("torii_config_reloads_total", (("result", result),)), 0)


def test_reload_applies_new_config_and_retires_old_workers(origin, torii):
    t = torii(_config(origin.port, "a"))
    assert simple_get(t.port, "/echo").header("X-Config") == "a"
    old = set(t.worker_pids())
    _write(t, _config(origin.port, "b"))
    os.kill(t.pid, signal.SIGHUP)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "configuration reloaded"], 10,
                   "'configuration reloaded'")
    wait_for(lambda: simple_get(t.port, "/echo").header("X-Config") == "b", 5, what="responses from config b")
    wait_for(lambda: not (set(t.worker_pids()) & old), 10, what="old workers gone")
    assert len(t.worker_pids()) == 2
    assert _reloads(t, "success") == 2  # the start and this reload


def test_invalid_reload_keeps_the_running_config(origin, torii):
    t = torii(_config(origin.port, "a"))
    pids = sorted(t.worker_pids())
    bad = _config(origin.port, "b")
    bad["routes"][0]["upstream"] = "ap"  # unknown upstream
    _write(t, bad)
    os.kill(t.pid, signal.SIGHUP)
    rec = t.wait_records(
        lambda recs: [r for r in recs if r.get("msg", "").startswith("configuration reload failed")], 10,
        "a reload failure line")[0]
    assert t.config_path in rec["error"] and "/routes/0/upstream" in rec["error"], rec
    assert 'did you mean "app"' in rec["error"], rec
    assert _reloads(t, "failure") == 1
    for _ in range(10):
        assert simple_get(t.port, "/echo").header("X-Config") == "a"
    assert sorted(t.worker_pids()) == pids
    # Fixing the file makes the next SIGHUP work.
    _write(t, _config(origin.port, "c"))
    os.kill(t.pid, signal.SIGHUP)
    wait_for(lambda: simple_get(t.port, "/echo").header("X-Config") == "c", 10, what="config c")


def test_reload_under_load_loses_no_request(origin, torii):
    """Keep-alive and new connections busy while the config flips every
    ~300 ms: every request gets a 200, and both configs are seen."""
    t = torii(_config(origin.port, "a"))
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "errors": [], "tags": set()}

    def client(keep_alive):
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
                conn.request("GET", "/echo", headers={} if keep_alive else {"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                tag = resp.getheader("X-Config")
                with lock:
                    if resp.status == 200:
                        stats["ok"] += 1
                        stats["tags"].add(tag)
                    else:
                        stats["failed"] += 1
                        stats["errors"].append(f"status {resp.status}")
                if not keep_alive or resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                with lock:
                    stats["failed"] += 1
                    stats["errors"].append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i % 4 != 0,), daemon=True) for i in range(48)]
    for th in threads:
        th.start()
    reloads = 0
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            time.sleep(0.3)
            reloads += 1
            _write(t, _config(origin.port, "b" if reloads % 2 else "a"))
            os.kill(t.pid, signal.SIGHUP)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=15)
    ok = t.records("configuration reloaded")
    print(f"reload under load: {stats['ok']} requests ok, {stats['failed']} failed, "
          f"{reloads} SIGHUPs, {len(ok)} reloads completed, configs seen {sorted(stats['tags'])}")
    if stats["failed"]:
        interesting = [ln for ln in t.log().splitlines()
                       if "level=warn" in ln or "level=error" in ln or "signal=" in ln]
        print("\n".join(interesting[-40:]))
    assert stats["failed"] == 0, stats["errors"][:10]
    assert stats["ok"] > 1000
    assert stats["tags"] == {"a", "b"}
    assert len(ok) >= 10
    assert not [r for r in t.records() if r.get("level") == "error"], t.log()[-3000:]

"""Configuration reload on SIGHUP (issue 6): a valid new config starts a new
generation of workers on the same sockets and the old one drains; an invalid
one is refused with file, JSON path and reason while the running generation
keeps serving; under load, reloads cost no request."""

import json
import os
import signal
import time

from helpers import HttpConn, LoadClients, admin_port, make_config, route, scrape, simple_get, wait_for


def _get_at(ip, port, target="/echo", timeout=5.0):
    with HttpConn(port, timeout=timeout, host=ip) as c:
        c.request("GET", target)
        return c.read_response()


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
    """The acceptance test of issue 6: 200 connections (150 keep-alive, 50
    opening a new connection per request) busy for 30 s while 50 reloads
    (one every ~550 ms) flip a route's response header between two configs:
    every request gets a 200, no connection error, and both configs are seen."""
    t = torii(_config(origin.port, "a"))
    load = LoadClients(t.port, 200, header="X-Config").start()
    reloads = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and reloads < 50:
            time.sleep(0.55)
            reloads += 1
            _write(t, _config(origin.port, "b" if reloads % 2 else "a"))
            os.kill(t.pid, signal.SIGHUP)
    finally:
        load.stop()
    ok = t.records("configuration reloaded")
    print(f"reload under load: {load.ok} requests ok, {load.failed} failed, "
          f"{reloads} SIGHUPs, {len(ok)} reloads completed, configs seen {sorted(load.header_values)}")
    if load.failed:
        interesting = [ln for ln in t.log().splitlines()
                       if "level=warn" in ln or "level=error" in ln or "signal=" in ln]
        print("\n".join(interesting[-40:]))
    assert load.failed == 0, load.errors[:10]
    assert load.ok > 1000
    assert load.header_values == {"a", "b"}
    assert reloads == 50
    assert len(ok) >= 40  # SIGHUPs that land during a reload are merged into the next one
    assert not [r for r in t.records() if r.get("level") == "error"], t.log()[-3000:]


def test_reload_changes_worker_count_and_listeners(origin, torii):
    t = torii(_config(origin.port, "a", workers=2))
    first_port = t.port

    # 2 -> 3 workers and a second listener.
    cfg = _config(origin.port, "b", workers=3)
    # The first listener keeps its configured address ("127.0.0.1:0"), which
    # is what identifies its sockets across reloads.
    cfg["listeners"].append({"address": "127.0.0.2:0", "backlog": 64})
    _write(t, cfg)
    os.kill(t.pid, signal.SIGHUP)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "configuration reloaded"], 10,
                   "'configuration reloaded'")
    second = t.wait_records(
        lambda recs: [r for r in recs if r.get("msg") == "listening" and r.get("address", "").startswith("127.0.0.2:")],
        5, "the new listener")
    second_port = int(second[0]["address"].rsplit(":", 1)[1])
    wait_for(lambda: len(t.worker_pids()) == 3, 10, what="3 workers")
    for _ in range(10):
        assert simple_get(first_port, "/echo").header("X-Config") == "b"
        r = _get_at("127.0.0.2", second_port)
        assert r.status == 200 and r.header("X-Config") == "b"

    # 3 -> 1 worker, second listener dropped: the first keeps every socket
    # (the one worker takes them all), the second is closed.
    _write(t, _config(origin.port, "c", workers=1))
    os.kill(t.pid, signal.SIGHUP)
    wait_for(lambda: len(t.records("configuration reloaded")) >= 2, 10, what="second reload")
    wait_for(lambda: len(t.worker_pids()) == 1, 15, what="1 worker")
    for _ in range(20):  # new connections land on every socket of the set
        assert simple_get(first_port, "/echo").header("X-Config") == "c"

    def refused():
        try:
            _get_at("127.0.0.2", second_port, timeout=1)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    wait_for(refused, 10, what="the dropped listener refusing connections")


def test_signal_command_uses_the_pid_file(origin, torii, tmp_path):
    from helpers import run_cli
    cfg = _config(origin.port, "a")
    cfg["pid_file"] = str(tmp_path / "torii.pid")
    t = torii(cfg)
    assert (tmp_path / "torii.pid").read_text().strip() == str(t.pid)
    cfg_b = dict(cfg, routes=[dict(route("app"), name="app", response_headers={"X-Config": "b"})])
    _write(t, cfg_b)
    res = run_cli(["-s", "reload", "-c", t.config_path])
    assert res.returncode == 0, res.stderr
    wait_for(lambda: simple_get(t.port, "/echo").header("X-Config") == "b", 10, what="config b")
    bad = run_cli(["-s", "bogus", "-c", t.config_path])
    assert bad.returncode == 1 and "unknown signal" in bad.stderr
    res = run_cli(["-s", "stop", "-c", t.config_path])
    assert res.returncode == 0, res.stderr
    assert t.wait_exit(10) == 0
    assert not (tmp_path / "torii.pid").exists(), "the master removes its pid file on exit"
    gone = run_cli(["-s", "reload", "-c", t.config_path])
    assert gone.returncode == 1 and "torii.pid" in gone.stderr


def test_listeners_on_port_zero_each_get_their_own_port_and_keep_it_on_reload(origin, torii):
    """Port 0 may be configured more than once: each listener is its own socket."""
    cfg = _config(origin.port, "a")
    cfg["listeners"] = [{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}]
    t = torii(cfg)
    assert len(t.ports) == 3 and len(set(t.ports)) == 3, t.ports
    for port in t.ports:
        assert simple_get(port, "/echo").header("X-Config") == "a"
    cfg2 = _config(origin.port, "b")
    cfg2["listeners"] = cfg["listeners"]
    _write(t, cfg2)
    os.kill(t.pid, signal.SIGHUP)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "configuration reloaded"], 10,
                   "'configuration reloaded'")
    for port in t.ports:
        wait_for(lambda: simple_get(port, "/echo").header("X-Config") == "b", 5, what=f"config b on {port}")
    assert len([r for r in t.records() if r.get("msg") == "listening"]) == 3, "a reload opened new sockets"

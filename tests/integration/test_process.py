"""Spec point 7: process model -- workers, respawn, graceful drain on SIGTERM, SIGINT."""

import os
import signal
import socket
import threading
import time

import pytest

from helpers import Closed, HttpConn, make_config, pid_alive, simple_get, wait_for


def test_workers_are_children_of_master(origin, torii):
    t = torii(make_config(origin.port, workers=2))
    kids = t.worker_pids()
    assert len(kids) == 2, f"children of master {t.pid}: {kids}"
    ready = t.ready_workers()
    assert sorted(ready.values()) == kids, f"'worker ready' pids {ready} vs children {kids}"
    assert sorted(ready) == ["0", "1"], ready
    assert simple_get(t.port, "/echo").status == 200


def test_worker_respawned_after_sigkill(origin, torii):
    t = torii(make_config(origin.port, workers=2))
    before = t.ready_workers()
    victim_idx, victim = sorted(before.items())[0]
    n_ready = len(t.records("worker ready"))
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "worker exited"], 3,
                   "'worker exited' log line")
    new = t.wait_records(
        lambda recs: [r for r in recs if r.get("msg") == "worker ready"][n_ready:],
        3, "a new 'worker ready' line")
    elapsed = time.monotonic() - t0
    assert elapsed <= 2.5, f"replacement ready after {elapsed:.2f}s"
    assert new[0].get("worker") == victim_idx, new
    assert int(new[0]["pid"]) != victim
    assert not pid_alive(victim)
    kids = t.worker_pids()
    assert len(kids) == 2 and victim not in kids and int(new[0]["pid"]) in kids, kids
    for i in range(20):
        assert simple_get(t.port, f"/echo?i={i}").status == 200


def test_sigterm_drains_in_flight_request(origin, torii):
    t = torii(make_config(origin.port, workers=2, timeouts={"drain": "10s"}))
    result = {}

    def slow():
        try:
            result["resp"] = simple_get(t.port, "/delay?ms=1500", timeout=10)
        except Exception as e:  # noqa: BLE001
            result["resp"] = e

    th = threading.Thread(target=slow)
    th.start()
    try:
        wait_for(lambda: origin.stats()["in_flight"].get("/delay"), 5, what="slow request at the origin")
        workers = t.worker_pids()
        t.send_signal(signal.SIGTERM)
        th.join(10)
        resp = result.get("resp")
        assert getattr(resp, "status", resp) == 200, f"in-flight request during drain: {resp!r}"
        code = t.wait_exit(10)
        assert code == 0, f"master exit status {code} after SIGTERM"
        wait_for(lambda: not any(pid_alive(p) for p in workers), 3, what="workers to exit")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", t.port), timeout=2).close()
    finally:
        th.join(10)


def _new_connection_outcome(port):
    """What a brand-new client sees: refused / closed / served <status> / hung."""
    try:
        c = HttpConn(port, timeout=1)
    except ConnectionRefusedError:
        return "refused"
    with c:
        try:
            c.request("GET", "/echo")
            return f"served {c.read_response(timeout=0.7).status}"
        except (Closed, OSError) as e:
            return "hung" if isinstance(e, socket.timeout) else "closed"


def test_sigterm_stops_accepting_during_drain(origin, torii):
    """While draining, new connections are refused or closed at once -- not left hanging
    in the listen backlog until the drain ends, and not served."""
    t = torii(make_config(origin.port, workers=2, timeouts={"drain": "10s"}))
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("resp", simple_get(t.port, "/delay?ms=3000", timeout=10)))
    th.start()
    outcomes = []
    try:
        wait_for(lambda: origin.stats()["in_flight"].get("/delay"), 5, what="slow request at the origin")
        t.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            outcomes.append(_new_connection_outcome(t.port))
            if outcomes[-1] in ("refused", "closed", "served 503"):
                break
            time.sleep(0.05)
        assert origin.stats()["in_flight"].get("/delay"), "test precondition: request still in flight"
        assert outcomes[-1] in ("refused", "closed", "served 503"), f"new connections during drain: {outcomes}"
    finally:
        th.join(10)
    assert getattr(result.get("resp"), "status", None) == 200


def test_sigterm_idle_exits_quickly(origin, torii):
    t = torii(make_config(origin.port, workers=2, timeouts={"drain": "10s"}))
    assert simple_get(t.port, "/echo").status == 200
    t0 = time.monotonic()
    t.send_signal(signal.SIGTERM)
    code = t.wait_exit(5)
    assert code == 0, f"exit status {code}"
    assert time.monotonic() - t0 < 3, "idle gateway took the whole drain period to stop"


def test_sigint_exits_promptly(origin, torii):
    t = torii(make_config(origin.port, workers=2, timeouts={"drain": "30s"}))
    workers = t.worker_pids()
    # a request in flight must not hold up an immediate stop
    th = threading.Thread(target=lambda: _quiet_get(t.port, "/delay?ms=5000"), daemon=True)
    th.start()
    wait_for(lambda: origin.stats()["in_flight"].get("/delay"), 5, what="slow request at the origin")
    t0 = time.monotonic()
    t.send_signal(signal.SIGINT)
    code = t.wait_exit(3)
    assert code is not None, "master still running 3s after SIGINT"
    assert time.monotonic() - t0 < 2.0
    wait_for(lambda: not any(pid_alive(p) for p in workers), 2, what="workers to exit")
    th.join(6)


def _quiet_get(port, target):
    try:
        simple_get(port, target, timeout=6)
    except Exception:  # noqa: BLE001 -- the gateway is being killed under it
        pass


def test_crash_looping_worker_respawn_backs_off(origin, torii):
    """A worker that keeps dying right after start is respawned with a growing
    delay (100 ms, doubling); one that ran long enough comes back at once."""
    t = torii(make_config(origin.port, workers=1))
    delays = []
    for round_ in range(4):
        n_ready = len(t.records("worker ready"))
        n_sched = len(t.records("worker respawn scheduled"))
        (victim,) = t.worker_pids()
        os.kill(victim, signal.SIGKILL)
        sched = t.wait_records(
            lambda recs: [r for r in recs if r.get("msg") == "worker respawn scheduled"][n_sched:],
            5, "'worker respawn scheduled' line")
        delays.append(int(sched[0]["delay_ms"]))
        t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "worker ready"][n_ready:],
                       5, f"worker ready after kill #{round_ + 1}")
    # The first victim had just started too (the fixture waits only for
    # readiness), so every kill counts as a crash loop.
    assert delays == [100, 200, 400, 800], delays
    # After a healthy run (>= 2 s) the next respawn is immediate again.
    time.sleep(2.2)
    n_sched = len(t.records("worker respawn scheduled"))
    (victim,) = t.worker_pids()
    os.kill(victim, signal.SIGKILL)
    sched = t.wait_records(
        lambda recs: [r for r in recs if r.get("msg") == "worker respawn scheduled"][n_sched:],
        5, "'worker respawn scheduled' line")
    assert int(sched[0]["delay_ms"]) == 0, sched
    wait_for(lambda: len(t.worker_pids()) == 1 and victim not in t.worker_pids(), 3,
             what="replacement worker")
    assert simple_get(t.port, "/echo").status == 200


def test_sigkill_worker_under_load_fails_only_its_connections(origin, torii):
    """Load on 2 workers; SIGKILL one: a replacement serves within a second,
    and failures are limited to connections the killed worker held."""
    import http.client
    t = torii(make_config(origin.port, workers=2))
    stop = threading.Event()
    lock = threading.Lock()
    res = {"ok": 0, "failed": 0, "after_ok": 0}
    killed_at = {}

    def client():
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=5)
                conn.request("GET", "/echo")
                r = conn.getresponse()
                r.read()
                with lock:
                    res["ok"] += 1
                    if "t" in killed_at and time.monotonic() > killed_at["t"] + 1.5:
                        res["after_ok"] += 1
            except Exception:  # noqa: BLE001
                with lock:
                    res["failed"] += 1
                if conn is not None:
                    conn.close()
                conn = None

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for th in threads:
        th.start()
    try:
        time.sleep(1.0)
        victim = t.worker_pids()[0]
        n_ready = len(t.records("worker ready"))
        killed_at["t"] = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "worker ready"][n_ready:], 1.5,
                       "a replacement worker within about a second")
        time.sleep(2.0)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=10)
    assert any(r.get("msg") == "worker exited" and r.get("signal") == "Killed" for r in t.records())
    # Each of the 16 client connections fails at most once (the one it had on
    # the killed worker), then reconnects and succeeds.
    assert res["failed"] <= 16, res
    assert res["after_ok"] > 100, res


def test_second_sigterm_forces_exit_and_sigquit_is_immediate(origin, torii):
    t = torii(make_config(origin.port, workers=2, timeouts={"drain": "30s"}))
    th = threading.Thread(target=lambda: _quiet_get(t.port, "/delay?ms=20000"), daemon=True)
    th.start()
    wait_for(lambda: origin.stats()["in_flight"].get("/delay"), 5, what="slow request at the origin")
    t0 = time.monotonic()
    t.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert t.proc.poll() is None, "the first SIGTERM waits for the in-flight request"
    t.send_signal(signal.SIGTERM)
    assert t.wait_exit(5) is not None, "a second SIGTERM forces the exit"
    assert time.monotonic() - t0 < 5

    t2 = torii(make_config(origin.port, workers=2, timeouts={"drain": "30s"}))
    th2 = threading.Thread(target=lambda: _quiet_get(t2.port, "/delay?ms=20000"), daemon=True)
    th2.start()
    wait_for(lambda: origin.stats()["in_flight"].get("/delay", 0) >= 2, 5, what="second slow request")
    t1 = time.monotonic()
    t2.send_signal(signal.SIGQUIT)
    assert t2.wait_exit(5) is not None
    assert time.monotonic() - t1 < 3, "SIGQUIT does not wait for in-flight requests"

"""Binary upgrade without dropping connections (issue 6, point 6): SIGUSR2
makes the master exec a new master with the listening sockets (and the admin
socket) inherited; once the new master's workers are ready it tells the old
master (SIGWINCH) to drain its workers and exit. Tested like a reload: under
load, zero failed requests."""

import http.client
import os
import signal
import threading
import time

from helpers import admin_port, admin_request, make_config, pid_alive, route, simple_get, wait_for


def _children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(rest[1]) == pid and rest[0] != "Z":
            kids.append(int(d))
    return kids


def test_binary_upgrade_under_load_loses_no_request(origin, torii, tmp_path):
    cfg = make_config(origin.port, workers=2, routes=[dict(route("app"), name="app")],
                      admin={"address": "127.0.0.1:0"}, pid_file=str(tmp_path / "torii.pid"))
    cfg["timeouts"]["drain"] = "3s"
    t = torii(cfg)
    old_master = t.pid
    old_workers = set(t.worker_pids())
    admin = admin_port(t)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "errors": []}

    def client(keep_alive):
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
                conn.request("GET", "/echo", headers={} if keep_alive else {"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    if resp.status == 200:
                        stats["ok"] += 1
                    else:
                        stats["failed"] += 1
                        stats["errors"].append(resp.status)
                if not keep_alive or resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001
                with lock:
                    stats["failed"] += 1
                    stats["errors"].append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None

    threads = [threading.Thread(target=client, args=(i % 4 != 0,), daemon=True) for i in range(40)]
    for th in threads:
        th.start()
    new_master = None
    try:
        time.sleep(1.0)
        os.kill(old_master, signal.SIGUSR2)
        started = t.wait_records(
            lambda recs: [r for r in recs if r.get("msg") == "binary upgrade started"], 5,
            "'binary upgrade started'")
        new_master = int(started[0]["new_master"])
        t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "binary upgrade: taking over"], 10,
                       "the new master taking over")
        assert t.wait_exit(15) == 0, "the old master drains and exits cleanly"
        time.sleep(1.0)  # keep the load on the new master for a while
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=15)
    try:
        print(f"binary upgrade under load: {stats['ok']} ok, {stats['failed']} failed")
        assert stats["failed"] == 0, stats["errors"][:10]
        assert stats["ok"] > 200
        assert pid_alive(new_master)
        assert (tmp_path / "torii.pid").read_text().strip() == str(new_master)
        new_workers = _children_of(new_master)
        assert len(new_workers) == 2 and not (set(new_workers) & old_workers)
        assert not any(pid_alive(p) for p in old_workers)
        # Same listening port and the same admin port, now served by the new master.
        assert simple_get(t.port, "/echo").status == 200
        r, _ = admin_request(admin, "/readyz")
        assert r.status == 200
    finally:
        if new_master is not None and pid_alive(new_master):
            os.kill(new_master, signal.SIGTERM)
            wait_for(lambda: not pid_alive(new_master), 15, what="the new master to stop")

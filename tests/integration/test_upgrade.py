"""Binary upgrade without dropping connections (issue 6, point 6): SIGUSR2
makes the master exec a new master with the listening sockets (and the admin
socket) inherited; once the new master's workers are ready it tells the old
master (SIGWINCH) to drain its workers and exit. Tested like a reload: under
load, zero failed requests."""

import os
import signal
import time

from helpers import (LoadClients, admin_port, admin_request, children_of, make_config, pid_alive, route,
                     simple_get, wait_for)


def test_binary_upgrade_under_load_loses_no_request(origin, torii, tmp_path):
    cfg = make_config(origin.port, workers=2, routes=[dict(route("app"), name="app")],
                      admin={"address": "127.0.0.1:0"}, pid_file=str(tmp_path / "torii.pid"))
    cfg["timeouts"]["drain"] = "3s"
    t = torii(cfg)
    old_master = t.pid
    old_workers = set(t.worker_pids())
    admin = admin_port(t)
    load = LoadClients(t.port, 200).start()
    new_master = None
    try:
        time.sleep(2.0)
        os.kill(old_master, signal.SIGUSR2)
        started = t.wait_records(
            lambda recs: [r for r in recs if r.get("msg") == "binary upgrade started"], 5,
            "'binary upgrade started'")
        new_master = int(started[0]["new_master"])
        t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "binary upgrade: taking over"], 10,
                       "the new master taking over")
        assert t.wait_exit(15) == 0, "the old master drains and exits cleanly"
        time.sleep(3.0)  # keep the load on the new master for a while
    finally:
        load.stop()
    try:
        print(f"binary upgrade under load: {load.ok} ok, {load.failed} failed")
        assert load.failed == 0, load.errors[:10]
        assert load.ok > 1000
        assert pid_alive(new_master)
        assert (tmp_path / "torii.pid").read_text().strip() == str(new_master)
        new_workers = children_of(new_master)
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

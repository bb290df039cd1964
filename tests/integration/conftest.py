"""Fixtures: test origins, raw upstreams and the Torii binary under test."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (  # noqa: E402
    HTTP,
    children_of,
    ORIGIN_PY,
    PYTHON,
    TORII_BIN,
    parse_logfmt,
    pid_alive,
    run_cli,
)
from raw_upstreams import BacklogUpstream, RawUpstream  # noqa: E402  (path set by helpers)

READY_TIMEOUT = 10.0
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehaviorSanitizer")


# --------------------------------------------------------------------------- origin

class Origin:
    def __init__(self, name="origin", keepalive_timeout=None, tls=None):
        """`tls`: dict with "cert", "key", "ca" (the CA that signed cert, for
        the harness's own /stats calls) and optionally "client_ca"."""
        self.name = name
        args = [PYTHON, ORIGIN_PY, "--host", "127.0.0.1", "--port", "0", "--name", name]
        if keepalive_timeout is not None:
            args += ["--keepalive-timeout", str(keepalive_timeout)]
        self.tls = tls
        if tls:
            args += ["--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
            if tls.get("client_ca"):
                args += ["--tls-client-ca", str(tls["client_ca"])]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = None
        self._stderr = []
        line_box = []
        t = threading.Thread(target=lambda: line_box.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(15)
        line = line_box[0] if line_box else ""
        m = re.match(r"ORIGIN_PORT=(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"origin did not start: stdout={line!r} stderr={self.proc.stderr.read()!r}")
        self.port = int(m.group(1))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _get(self, path):
        if not self.tls:
            return HTTP.get(self.url + path, timeout=5)
        cert = (str(self.tls["client_cert"]), str(self.tls["client_key"])) if self.tls.get("client_ca") else None
        return HTTP.get(self.url + path, timeout=5, verify=str(self.tls["ca"]), cert=cert)

    def stats(self):
        return self._get("/stats").json()

    def reset_stats(self):
        self._get("/stats?reset=1")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def origin_factory():
    started = []

    def make(name="origin", keepalive_timeout=None):
        o = Origin(name, keepalive_timeout)
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@pytest.fixture
def origin(origin_factory):
    return origin_factory("origin")


@pytest.fixture
def raw_upstream():
    """Factory: raw_upstream(mode, **kw) -> started RawUpstream, stopped at teardown."""
    started = []

    def make(mode, **kw):
        up = RawUpstream(mode, **kw).start()
        started.append(up)
        return up

    yield make
    for up in started:
        up.stop()


@pytest.fixture
def backlog_upstream():
    b = BacklogUpstream()
    yield b
    b.close()


# --------------------------------------------------------------------------- torii

class Torii:
    """A running `torii -c FILE` master process with its stderr captured."""

    def __init__(self, config, config_path, env=None):
        self.config = config
        self.config_path = config_path
        self.lines = []
        self.cond = threading.Condition()
        self.seen_pids = set()
        self.ports = []
        if not (os.path.isfile(TORII_BIN) and os.access(TORII_BIN, os.X_OK)):
            pytest.fail(f"torii binary not found or not executable: {TORII_BIN} (set TORII_BIN)")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        self.proc = subprocess.Popen(
            [TORII_BIN, "-c", config_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _read_output(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self.cond:
                self.lines.append(line)
                rec = parse_logfmt(line)
                if rec.get("msg") == "worker ready" and rec.get("pid", "").isdigit():
                    self.seen_pids.add(int(rec["pid"]))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    # -- logs ------------------------------------------------------------------
    def log(self):
        with self.cond:
            return "".join(self.lines)

    def records(self, msg=None):
        with self.cond:
            recs = [parse_logfmt(line) for line in self.lines]
        return [r for r in recs if msg is None or r.get("msg") == msg]

    def wait_records(self, pred, timeout, what="log line"):
        """Wait until pred(list of logfmt records) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred([parse_logfmt(line) for line in self.lines])
                if v:
                    return v
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"timed out waiting for {what} (exit={self.proc.poll()}); log:\n{''.join(self.lines)[-4000:]}"
                    )
                self.cond.wait(min(remaining, 0.2))

    def wait_ready(self, timeout=READY_TIMEOUT):
        n_listeners = len(self.config.get("listeners", []))
        n_workers = int(self.config.get("workers", 1))

        def ready(recs):
            listening = [r for r in recs if r.get("msg") == "listening"]
            workers = {r.get("worker") for r in recs if r.get("msg") == "worker ready"}
            if len(listening) >= n_listeners and len(workers) >= n_workers:
                return listening
            return None

        listening = self.wait_records(ready, timeout, "all 'listening' and 'worker ready' lines")
        self.ports = []
        for r in listening[:n_listeners]:
            addr = r.get("address", "")
            m = re.search(r":(\d+)$", addr)
            assert m, f"cannot parse listening address {addr!r}"
            self.ports.append(int(m.group(1)))
        return self

    @property
    def port(self):
        return self.ports[0]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ready_workers(self):
        """Latest pid per worker index, from 'worker ready' lines: {index: pid}."""
        out = {}
        for r in self.records("worker ready"):
            out[r.get("worker")] = int(r["pid"])
        return out

    def worker_pids(self):
        """Live child processes of the master (from /proc)."""
        return children_of(self.pid)

    # -- lifecycle ---------------------------------------------------------------
    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the master and wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.proc.poll() is None:
            known = set(self.worker_pids())
            self.seen_pids |= known
            self.send_signal(sig)
            if self.wait_exit(timeout) is None:
                self.proc.kill()
                self.proc.wait(5)
        self._reap_workers()
        self.reader.join(5)
        return self.proc.returncode

    def _reap_workers(self):
        """Kill any worker we saw that outlived the master (only if it is still our binary)."""
        for pid in sorted(self.seen_pids):
            if not pid_alive(pid):
                continue
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if os.path.realpath(exe.replace(" (deleted)", "")) != os.path.realpath(TORII_BIN):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def sanitizer_report(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                i = text.index(marker)
                return text[max(0, i - 500): i + 3000]
        return None


@pytest.fixture
def torii(tmp_path):
    """Factory: torii(config_dict, wait=True) -> running Torii (ready unless wait=False)."""
    started = []

    def start(config, wait=True, env=None):
        t = Torii(config, str(tmp_path / f"torii-{len(started)}.json"), env=env)
        started.append(t)
        if wait:
            t.wait_ready()
        return t

    yield start
    problems = []
    for t in started:
        t.stop()
        rep = t.sanitizer_report()
        if rep:
            problems.append(f"sanitizer error in torii pid {t.pid}:\n{rep}")
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def cli():
    return run_cli

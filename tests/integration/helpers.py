"""Helpers for Torii integration tests: configs, logfmt, a raw HTTP/1.1 client."""

import copy
import hashlib
import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ORIGIN_DIR = os.path.join(REPO, "tests", "origin")
if ORIGIN_DIR not in sys.path:
    sys.path.insert(0, ORIGIN_DIR)

from origin import pattern_bytes  # noqa: E402  (deterministic origin content)

TORII_BIN = os.environ.get("TORII_BIN", os.path.join(REPO, "build", "gateway", "torii"))
ORIGIN_PY = os.path.join(ORIGIN_DIR, "origin.py")
PYTHON = "/usr/bin/python3"


def run_cli(args, timeout=10):
    """Run the torii binary with args; returns CompletedProcess (text)."""
    if not (os.path.isfile(TORII_BIN) and os.access(TORII_BIN, os.X_OK)):
        pytest.fail(f"torii binary not found or not executable: {TORII_BIN} (set TORII_BIN)")
    return subprocess.run([TORII_BIN] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class _Http:
    """requests without proxy settings from the environment and without pooling:
    one fresh connection per call (loopback only)."""

    def request(self, method, url, **kw):
        with requests.Session() as s:
            s.trust_env = False
            kw.setdefault("headers", {}).setdefault("Connection", "close")
            return s.request(method, url, **kw)

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)


HTTP = _Http()


def pattern_sha256(n):
    return hashlib.sha256(pattern_bytes(n)).hexdigest()


# --------------------------------------------------------------------------- config

def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def upstream(*ports, connect_timeout="5s", response_timeout="60s", **pool):
    """An upstream block for servers on 127.0.0.1:<port>."""
    p = {"max_connections": 256, "max_idle": 64, "idle_timeout": "60s", "max_pending": 1024}
    p.update(pool)
    return {
        "servers": [f"127.0.0.1:{port}" for port in ports],
        "connect_timeout": connect_timeout,
        "response_timeout": response_timeout,
        "pool": p,
    }


def route(upstream_name="app", host="*", path_prefix="/", methods=None):
    m = {"host": host, "path_prefix": path_prefix}
    if methods is not None:
        m["methods"] = methods
    return {"match": m, "upstream": upstream_name}


def make_config(upstreams=None, routes=None, **overrides):
    """The spec's reference config with port 0, a short drain, and overrides deep-merged.

    upstreams: dict name -> upstream block, or a port (int) for a single "app" upstream.
    routes: list of route blocks; default: everything to "app".
    """
    if upstreams is None:
        upstreams = 9001
    if isinstance(upstreams, int):
        upstreams = {"app": upstream(upstreams)}
    cfg = {
        "workers": 2,
        "log_level": "info",
        "listeners": [{"address": "127.0.0.1:0"}],
        "limits": {
            "max_request_line": "8KiB",
            "max_header_bytes": "32KiB",
            "max_header_count": 100,
            "max_body": "64MiB",
            "max_connections": 10000,
        },
        "timeouts": {
            "header_read": "10s",
            "body_read": "30s",
            "keepalive_idle": "60s",
            "send": "60s",
            "drain": "3s",
        },
        "upstreams": upstreams,
        "routes": routes if routes is not None else [route("app")],
    }
    return deep_merge(cfg, overrides)


# --------------------------------------------------------------------------- logfmt

_LOGFMT = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    out = {}
    for k, v in _LOGFMT.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[k] = v
    return out


# --------------------------------------------------------------------------- polling

def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until truthy; return its value. Raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A loopback port with (at the moment) nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------- raw HTTP client

class Closed(Exception):
    """The peer closed (or reset) the connection before a complete message arrived."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.raw_head = raw_head
        self.close_delimited = False

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} headers={self.headers!r} body={self.body[:200]!r}>"


class HttpConn:
    """One client TCP connection to the gateway, speaking raw HTTP/1.1."""

    def __init__(self, port, timeout=5.0, rcvbuf=None, host="127.0.0.1"):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    # sending
    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, headers=None, body=b"", host="test.local", version="HTTP/1.1"):
        self.send(build_request(method, target, headers, body, host, version))

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # receiving
    def _fill(self, deadline):
        if self.eof:
            raise Closed("connection closed by peer")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for data")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            self.eof = True
            raise Closed("connection reset by peer")
        if not data:
            self.eof = True
            raise Closed("connection closed by peer")
        self.buf += data

    def _read_until(self, sep, deadline):
        while sep not in self.buf:
            self._fill(deadline)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self._read_until(b"\r\n\r\n", deadline)
        return parse_head(head)

    def read_response(self, method="GET", timeout=None, skip_interim=True, max_body=None):
        """Read exactly one response (interim 1xx responses skipped unless skip_interim=False)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            head = self._read_until(b"\r\n\r\n", deadline)
            resp = parse_head(head)
            if 100 <= resp.status < 200 and resp.status != 101:
                if skip_interim:
                    continue
                return resp
            break
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if method == "HEAD" or resp.status in (204, 304):
            resp.body = b""
        elif te:
            if not te.replace(" ", "").endswith("chunked"):
                raise AssertionError(f"response with non-chunked Transfer-Encoding: {te!r}")
            body = bytearray()
            while True:
                line = self._read_until(b"\r\n", deadline)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                body += self._read_exact(size, deadline)
                if self._read_exact(2, deadline) != b"\r\n":
                    raise AssertionError("bad chunk terminator in response")
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self._read_exact(int(cl), deadline)
        else:
            resp.body = self.read_until_eof(deadline - time.monotonic())
            resp.close_delimited = True
        return resp

    def read_until_eof(self, timeout=None):
        """Everything until the peer closes. Raises socket.timeout if it does not close in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                self._fill(deadline)
            except Closed:
                out, self.buf = self.buf, b""
                return out

    def closed_within(self, timeout):
        """True if the peer closes/resets within timeout (pending data is discarded)."""
        try:
            self.read_until_eof(timeout)
            return True
        except socket.timeout:
            return False

    def is_open_now(self, wait=0.05):
        """True if no EOF/RST is pending (the connection still looks usable)."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return True
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, OSError):
            return False
        return bool(data)


def build_request(method, target, headers=None, body=b"", host="test.local", version="HTTP/1.1"):
    lines = [f"{method} {target} {version}"]
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head):
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise AssertionError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep:
            raise AssertionError(f"bad header line {line!r} in response")
        headers.append((k, v.strip()))
    return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, b"", head)


def chunk_body(body, sizes):
    """Encode body with chunked framing, cycling through the given chunk sizes."""
    out = bytearray()
    pos, i = 0, 0
    while pos < len(body):
        n = min(sizes[i % len(sizes)], len(body) - pos)
        out += f"{n:x}\r\n".encode() + body[pos:pos + n] + b"\r\n"
        pos += n
        i += 1
    out += b"0\r\n\r\n"
    return bytes(out)


def exchange(port, data, timeout=5.0, method="GET"):
    """Send raw bytes on a fresh connection, read one response. Returns (resp, conn)."""
    c = HttpConn(port, timeout=timeout)
    c.send(data)
    return c.read_response(method=method), c


def simple_get(port, target="/echo", headers=None, host="test.local", timeout=5.0, method="GET", body=b""):
    with HttpConn(port, timeout=timeout) as c:
        c.request(method, target, headers=headers, body=body, host=host)
        return c.read_response(method=method)


def echo_headers(resp):
    """Origin /echo JSON -> list of (name, value)."""
    return [(k, v) for k, v in resp.json()["headers"]]


def echo_header(resp, name):
    vals = [v for k, v in echo_headers(resp) if k.lower() == name.lower()]
    return vals


# --------------------------------------------------------------------------- admin listener / metrics
# (added for test_metrics.py)

ADMIN_ANY_PORT = {"address": "127.0.0.1:0"}


def admin_port(t, timeout=5.0):
    """The admin listener's port, from the master's `msg="admin listening" address=HOST:PORT` line."""
    recs = t.wait_records(lambda rs: [r for r in rs if r.get("msg") == "admin listening"], timeout,
                          "the 'admin listening' line")
    m = re.search(r":(\d+)$", recs[-1].get("address", ""))
    assert m, f"cannot parse admin address {recs[-1]!r}"
    return int(m.group(1))


def admin_request(port, path="/metrics", method="GET", timeout=5.0):
    """One request to the admin listener on a fresh connection. Returns (Response, seconds taken).

    The admin listener always answers with Connection: close; for HEAD the bytes after the head
    (which must be none) end up in resp.body."""
    start = time.monotonic()
    with HttpConn(port, timeout=timeout) as c:
        c.request(method, path, host=f"127.0.0.1:{port}")
        resp = c.read_response(method=method)
        if method == "HEAD":
            resp.body = c.read_until_eof(max(0.1, timeout - (time.monotonic() - start)))
    return resp, time.monotonic() - start


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _unescape_label(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def _prom_float(s):
    return {"+Inf": float("inf"), "-Inf": float("-inf"), "NaN": float("nan")}.get(s) or float(s)


class Metrics:
    """A parsed Prometheus text exposition: samples keyed by (name, sorted label items)."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        self.helps = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE.match(line)
            assert m, f"unparseable exposition line {line!r}"
            name, labels_text, value = m.groups()
            labels = {}
            if labels_text:
                pos = 0
                while pos < len(labels_text):
                    lm = _LABEL.match(labels_text, pos)
                    assert lm, f"unparseable labels in {line!r}"
                    labels[lm.group(1)] = _unescape_label(lm.group(2))
                    pos = lm.end()
            key = (name, tuple(sorted(labels.items())))
            assert key not in self.samples, f"duplicate sample {line!r}"
            self.samples[key] = _prom_float(value)

    def series(self, name, **labels):
        """[(labels dict, value)] of every sample of `name` whose labels include `labels`."""
        out = []
        for (n, items), v in self.samples.items():
            d = dict(items)
            if n == name and all(d.get(k) == v2 for k, v2 in labels.items()):
                out.append((d, v))
        return out

    def get(self, name, default=None, **labels):
        """The value of the one sample with exactly these labels (default if absent)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def sum(self, name, **labels):
        return sum(v for _, v in self.series(name, **labels))

    def family_of(self, sample_name):
        for suffix in ("_bucket", "_count", "_sum", ""):
            base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
            if sample_name.endswith(suffix) and self.types.get(base) in (("histogram", "summary") if suffix else
                                                                        ("counter", "gauge", "untyped")):
                return base
        return None

    def counters(self):
        """{key: value} of every monotonic sample: counters and histogram buckets/counts/sums."""
        out = {}
        for key, v in self.samples.items():
            fam = self.family_of(key[0])
            if fam is not None and self.types[fam] in ("counter", "histogram"):
                out[key] = v
        return out


def scrape(port, timeout=5.0):
    """GET /metrics from the admin listener -> Metrics (asserts a 200)."""
    resp, _ = admin_request(port, "/metrics", timeout=timeout)
    assert resp.status == 200, f"/metrics answered {resp!r}"
    return Metrics(resp.body.decode("utf-8"))


def scrape_until(port, pred, timeout=5.0, interval=0.02):
    """Scrape until pred(Metrics) is true; returns that scrape, or the last one after `timeout`
    (for the caller's assertions to explain). A worker counts a request just after queueing its
    response, so a client can see the response a moment before a scrape sees the count."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(port)
        if pred(m) or time.monotonic() >= deadline:
            return m
        time.sleep(interval)


# --------------------------------------------------------------------------- load

def children_of(pid):
    """Live (non-zombie) child processes of `pid`, from /proc."""
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
    return sorted(kids)


class LoadClients:
    """`n` threads sending GET `target` in a loop until stop(): three in four
    keep their connection alive (reconnecting when a response says
    Connection: close), one in four opens a new connection per request.
    Every exception or non-200 answer counts as a failure."""

    def __init__(self, port, n, target="/echo", header=None):
        self.port, self.target, self.header = port, target, header
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.errors = []
        self.header_values = set()
        self.threads = [threading.Thread(target=self._run, args=(i % 4 != 0,), daemon=True)
                        for i in range(n)]

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self):
        self.stop_event.set()
        for th in self.threads:
            th.join(timeout=15)

    def _run(self, keep_alive):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", self.target, headers={} if keep_alive else {"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        if self.header:
                            self.header_values.add(resp.getheader(self.header))
                    else:
                        self.failed += 1
                        self.errors.append(f"status {resp.status}")
                if not keep_alive or resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failed += 1
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

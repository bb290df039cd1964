"""The Django example app (docker/examples/django) under gunicorn, behind a real Torii (issue 8).

One stack for the module: gunicorn (Debian's /usr/bin/gunicorn with python3-django, started from
docker/examples/django as `gunicorn exampleapp.wsgi:application -b 127.0.0.1:PORT`, so its
gunicorn.conf.py applies), the aiohttp test origin, and a 2-worker Torii with a plain listener
(127.0.0.1) and a TLS listener (127.0.0.2, a self-signed certificate made with openssl) routing
/api/ to Django (/api/cached with Torii's cache) and everything else to the origin.

Checked: routing by path prefix, the X-Forwarded-* and X-Request-Id headers Django receives,
ALLOWED_HOSTS, request.is_secure() over TLS and not over plain HTTP (even when a client forges
X-Forwarded-Proto), the cached endpoint answered by Torii's cache, a 1 MiB POST arriving intact over
both listeners (and a chunked one), CSRF still guarding the other views, and Torii reusing its
keep-alive connections to gunicorn.
"""

import hashlib
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import Origin, Torii
from helpers import (
    REPO,
    HttpConn,
    admin_port,
    free_port,
    make_config,
    scrape_until,
    upstream,
    wait_for,
)

GUNICORN = "/usr/bin/gunicorn"
APP_DIR = os.environ.get("TORII_DJANGO_APP_DIR", os.path.join(REPO, "docker", "examples", "django"))
HOST = "app.test"  # the public name clients use; in DJANGO_ALLOWED_HOSTS
START_TIMEOUT = 20


def self_signed(folder):
    """A self-signed EC certificate for 127.0.0.2 (also the client's trust anchor)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", f"/CN={HOST}",
                        "-addext", f"subjectAltName=DNS:{HOST},IP:127.0.0.2"],
                       cwd=folder, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"openssl failed: {r.stderr}"
    return folder / "cert.pem", folder / "key.pem"


class Gunicorn:
    def __init__(self):
        if not os.access(GUNICORN, os.X_OK):
            pytest.fail(f"{GUNICORN} is missing (apt-get install -y gunicorn python3-django)")
        self.port = free_port()
        # FORWARDED_ALLOW_IPS="": gunicorn itself trusts no proxy (as in a container network,
        # where Torii is not 127.0.0.1), so is_secure() depends on Django's SECURE_PROXY_SSL_HEADER.
        env = dict(os.environ, DJANGO_ALLOWED_HOSTS=f"{HOST},127.0.0.1", GUNICORN_WORKERS="1",
                   GUNICORN_THREADS="4", FORWARDED_ALLOW_IPS="", PYTHONDONTWRITEBYTECODE="1")
        self.out = []
        self.proc = subprocess.Popen(
            [GUNICORN, "exampleapp.wsgi:application", "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3"],
            cwd=APP_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True).start()
        try:
            wait_for(self._healthy, START_TIMEOUT, interval=0.1, what="gunicorn answering /healthz")
        except AssertionError:
            self.stop()
            raise AssertionError(f"gunicorn did not come up:\n{''.join(self.out)[-3000:]}")

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{''.join(self.out)[-3000:]}")
        try:
            with requests.Session() as s:
                s.trust_env = False
                return s.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: gunicorn and its workers
                self.proc.wait(5)


class Stack:
    pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("django")
    cert, key = self_signed(folder / "tls")
    s = Stack()
    s.cert = str(cert)
    started = []
    t = None
    try:
        s.gunicorn = Gunicorn()
        started.append(s.gunicorn)
        s.origin = Origin("origin")
        started.append(s.origin)
        cfg = make_config(
            {
                # idle_timeout below gunicorn's keep-alive (75 s in gunicorn.conf.py): Torii closes first
                "django": upstream(s.gunicorn.port, idle_timeout="30s"),
                "app": upstream(s.origin.port),
            },
            routes=[
                {"name": "django", "match": {"path_prefix": "/api/"}, "upstream": "django"},
                {"name": "django-cached", "match": {"path_prefix": "/api/cached"}, "upstream": "django",
                 "cache": {"ttl": "10s"}},
                {"name": "origin", "upstream": "app"},
            ],
            workers=2,
            listeners=[{"address": "127.0.0.1:0"},
                       {"address": "127.0.0.2:0", "tls": {"certificates": [{"cert": s.cert, "key": str(key)}]}}],
            admin={"address": "127.0.0.1:0"},
        )
        t = Torii(cfg, str(folder / "torii.json"))
        t.wait_ready()
        s.torii = t
        s.admin = admin_port(t)
        s.http = f"http://127.0.0.1:{t.ports[0]}"
        s.https = f"https://127.0.0.2:{t.ports[1]}"
        yield s
    finally:
        if t is not None:
            t.stop()
        for p in reversed(started):
            p.stop()
        if t is not None:
            rep = t.sanitizer_report()
            if rep:
                pytest.fail(f"sanitizer error in torii pid {t.pid}:\n{rep}")


def call(stack, method, url, headers=None, **kw):
    """One request through Torii on a fresh connection (no proxies from the environment)."""
    with requests.Session() as s:
        s.trust_env = False
        h = {"Host": HOST, "Connection": "close"}
        h.update(headers or {})
        return s.request(method, url, headers=h, timeout=10, verify=stack.cert, **kw)


def whoami(stack, base, headers=None):
    r = call(stack, "GET", base + "/api/whoami?x=1", headers)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.json()


# --------------------------------------------------------------------------- routing

def test_path_prefix_routes_to_django_and_the_rest_to_the_origin(stack):
    d = whoami(stack, stack.http)
    assert d["path"] == "/api/whoami" and d["query"] == "x=1", d
    assert "pid" in d and "is_secure" in d  # Django's view
    r = call(stack, "GET", stack.http + "/echo")
    assert r.status_code == 200 and r.headers.get("X-Origin-Name") == "origin", r.headers
    assert "headers" in r.json()  # the aiohttp origin's /echo
    r = call(stack, "GET", stack.http + "/")
    assert r.headers.get("X-Origin-Name") == "origin"
    assert "torii-django-example" not in r.text


def test_django_refuses_a_host_not_in_allowed_hosts(stack):
    r = call(stack, "GET", stack.http + "/api/whoami", headers={"Host": "evil.test"})
    assert r.status_code == 400, (r.status_code, r.text[:300])


# --------------------------------------------------------------------------- headers

def test_forwarded_headers_reach_django(stack):
    d = whoami(stack, stack.http, {"X-Request-Id": "django-rid-42", "X-Forwarded-For": "203.0.113.7",
                                   "X-Forwarded-Host": "evil.test"})
    assert d["host"] == HOST
    assert d["x_forwarded_host"] == HOST, d  # Torii replaces a client's X-Forwarded-Host with Host
    assert d["x_forwarded_proto"] == "http"
    # Torii appends the address of its client; what the client sent stays in front of it
    assert d["x_forwarded_for"] == "203.0.113.7, 127.0.0.1", d
    assert d["client_ip"] == "127.0.0.1"
    assert d["remote_addr"] == "127.0.0.1"  # gunicorn's peer: Torii
    assert d["x_request_id"] == "django-rid-42"
    assert "torii" in (d["via"] or "").lower(), d


def test_request_id_generated_when_missing(stack):
    r = call(stack, "GET", stack.http + "/api/whoami")
    d = r.json()
    assert d["x_request_id"], d
    assert r.headers.get("X-Request-Id") == d["x_request_id"]  # the same id goes back to the client


def test_is_secure_true_over_tls(stack):
    d = whoami(stack, stack.https)
    assert d["x_forwarded_proto"] == "https"
    assert d["is_secure"] is True and d["scheme"] == "https", d
    assert d["absolute_uri"] == f"https://{HOST}/api/whoami?x=1"


def test_is_secure_false_over_plain_http_even_when_forged(stack):
    d = whoami(stack, stack.http)
    assert d["is_secure"] is False and d["scheme"] == "http", d
    # A client cannot make Django believe it is on HTTPS: Torii replaces X-Forwarded-Proto.
    d = whoami(stack, stack.http, {"X-Forwarded-Proto": "https"})
    assert d["x_forwarded_proto"] == "http" and d["is_secure"] is False, d


# --------------------------------------------------------------------------- cache

def test_cached_endpoint_served_from_torii_cache(stack):
    target = f"/api/cached?t={time.monotonic_ns()}"  # a key nothing else has used
    with HttpConn(stack.torii.ports[0], timeout=10) as c:  # one connection: one Torii worker, one cache
        c.request("GET", target, host=HOST)
        first = c.read_response()
        c.request("GET", target, host=HOST)
        second = c.read_response()
    assert first.status == 200 and second.status == 200, (first, second)
    assert first.header("Cache-Control") == "public, max-age=60"
    assert first.header("Cache-Status") == "torii; fwd=miss; stored", first.header("Cache-Status")
    status = second.header("Cache-Status") or ""
    assert status.startswith("torii; hit"), status
    assert second.body == first.body, "a hit repeats the stored body (Django rendered it once)"
    assert second.header("Age") is not None


# --------------------------------------------------------------------------- request bodies

@pytest.mark.parametrize("listener", ["http", "https"])
def test_post_1mib_body_arrives_intact(stack, listener):
    body = os.urandom(1 << 20)
    base = stack.http if listener == "http" else stack.https
    r = call(stack, "POST", base + "/api/echo", {"Content-Type": "application/octet-stream"}, data=body)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    got = r.json()
    assert got["length"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["content_type"] == "application/octet-stream"


def test_post_chunked_body_arrives_intact(stack):
    # Torii forwards a chunked body chunked; the example view reads it via wsgi.input_terminated
    body = os.urandom(300_000)
    pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = call(stack, "POST", stack.https + "/api/echo", {"Content-Type": "application/octet-stream"}, data=pieces)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.json()["length"] == len(body)
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_csrf_still_guards_the_other_views(stack):
    # /api/echo is csrf_exempt; a POST without a CSRF token anywhere else is refused by Django
    r = call(stack, "POST", stack.https + "/api/whoami", data=b"x")
    assert r.status_code == 403 and "CSRF" in r.text, (r.status_code, r.text[:300])


# --------------------------------------------------------------------------- connection reuse

def test_torii_reuses_keep_alive_connections_to_gunicorn(stack):
    def connects(m):
        return m.sum("torii_upstream_connect_duration_seconds_count", upstream="django")

    def responses(m):
        return m.sum("torii_upstream_requests_total", upstream="django", outcome="response")

    before = scrape_until(stack.admin, lambda m: True)
    n = 12
    for i in range(n):
        d = whoami(stack, stack.http)
        assert d["path"] == "/api/whoami"
    after = scrape_until(stack.admin, lambda m: responses(m) - responses(before) >= n)
    assert responses(after) - responses(before) == n
    # 2 Torii workers: at most one new connection each (gunicorn's gthread workers keep them alive)
    assert connects(after) - connects(before) <= 2, after.series("torii_upstream_connect_duration_seconds_count")
    errors = after.sum("torii_upstream_requests_total", upstream="django") - responses(after)
    assert errors == 0, after.series("torii_upstream_requests_total", upstream="django")

"""TLS to upstreams (`upstreams.<name>.tls`): an https origin (aiohttp with
Python's ssl) behind the gateway. Byte-exact bodies both ways, pooled TLS
connections reused, certificate verification on by default (CA bundle,
host name and IP address checks), SNI, session resumption on new
connections, a client certificate (mutual TLS), an upstream closing idle
TLS connections, config errors with their JSON path, and the CA re-read on
SIGHUP.

Certificates are made at test time with the `openssl` CLI (tests/integration/pki.py).
"""

import hashlib
import os
import shutil
import signal
import time

import pytest

from conftest import Origin
from helpers import HttpConn, make_config, pattern_sha256, scrape, admin_port, simple_get, wait_for
from pki import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("upki"))
    p.leaf("origin", ["origin.test"], ips=["127.0.0.1"])  # the name and the address
    p.leaf("named", ["origin.test"])  # the name only
    p.leaf("client", ["torii-client"], eku="clientAuth")
    p.other = Pki(tmp_path_factory.mktemp("other-ca"))  # a CA nobody trusts
    p.other.leaf("rogue", ["origin.test"], ips=["127.0.0.1"])
    return p


@pytest.fixture
def https_origin(pki):
    """Factory: an aiohttp origin serving HTTPS with one of pki's certificates."""
    started = []

    def make(cert="origin", issuer=None, client_ca=False, keepalive_timeout=None):
        issuer = issuer or pki
        tls = {"cert": issuer.path(cert), "key": issuer.path(cert, "key"), "ca": issuer.ca}
        if client_ca:
            tls.update(client_ca=pki.ca, client_cert=pki.path("client"), client_key=pki.path("client", "key"))
        o = Origin("tls-origin", keepalive_timeout=keepalive_timeout, tls=tls)
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


def tls_upstream(port, tls=True, **pool):
    p = {"max_connections": 64, "max_idle": 16, "idle_timeout": "60s"}
    p.update(pool)
    return {"servers": [f"127.0.0.1:{port}"], "connect_timeout": "3s", "response_timeout": "10s",
            "pool": p, "tls": tls}


def gateway(torii, port, tls, workers=1, **pool):
    return torii(make_config({"app": tls_upstream(port, tls, **pool)}, workers=workers,
                             admin={"address": "127.0.0.1:0"}))


def get(t, target="/echo", **kw):
    return simple_get(t.ports[0], target, **kw)


def handshake_failures(t):
    return [r for r in t.records() if r.get("msg") == "upstream TLS handshake failed"]


def outcome(t, name):
    return scrape(admin_port(t)).sum("torii_upstream_requests_total", outcome=name)


# --------------------------------------------------------------------------- proxying over TLS

def test_bodies_byte_exact_over_one_pooled_tls_connection(torii, https_origin, pki):
    o = https_origin()
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"})
    with HttpConn(t.ports[0], timeout=10) as c:
        for i in range(20):
            c.request("GET", f"/echo?i={i}")
            r = c.read_response()
            assert r.status == 200 and r.json()["query"] == f"i={i}", r
        size = 3 * 1024 * 1024 + 17  # many TLS records, several read buffers
        c.request("GET", f"/bytes/{size}")
        r = c.read_response()
        assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == pattern_sha256(size)
        body = os.urandom(1024 * 1024 + 3)
        c.request("POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
        r = c.read_response()
        assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        c.request("POST", "/echo", body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                  headers={"Transfer-Encoding": "chunked"})
        r = c.read_response()
        assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    stats = o.stats()
    assert stats["total"] == 23
    assert stats["connections"] == 1, "the TLS connection was not reused"
    assert stats["tls"]["sni"] == {"origin.test": 1}
    # The client's scheme, not the upstream's, is what X-Forwarded-Proto says.
    r = get(t, "/echo")
    headers = {k.lower(): v for k, v in r.json()["headers"]}
    assert headers["x-forwarded-proto"] == "http"


def test_ip_address_server_checked_against_its_ip_san_without_sni(torii, https_origin, pki):
    o = https_origin("origin")  # SAN IP:127.0.0.1
    t = gateway(torii, o.port, {"ca": str(pki.ca)})
    assert get(t).status == 200
    assert o.stats()["tls"]["sni"] == {"": 1}, "an IP address must not be sent as SNI (RFC 6066)"
    o2 = https_origin("named")  # SAN origin.test only
    t2 = gateway(torii, o2.port, {"ca": str(pki.ca)})
    r = get(t2)
    assert r.status == 502
    wait_for(lambda: handshake_failures(t2), 5, what="the handshake failure log line")
    assert "IP address mismatch" in handshake_failures(t2)[0].get("reason", ""), handshake_failures(t2)


# --------------------------------------------------------------------------- verification

def test_verification_is_on_by_default(torii, https_origin, pki):
    """"tls": true trusts the system store only, which does not know the test CA."""
    o = https_origin()
    t = gateway(torii, o.port, True)
    r = get(t)
    assert r.status == 502, r
    wait_for(lambda: handshake_failures(t), 5, what="the handshake failure log line")
    rec = handshake_failures(t)[0]
    assert "unable to get local issuer certificate" in rec.get("reason", ""), rec
    assert outcome(t, "tls_error") >= 1
    assert o.stats()["total"] == 0, "a request went to an unverified upstream"


def test_certificate_of_an_untrusted_ca_is_refused(torii, https_origin, pki):
    o = https_origin("rogue", issuer=pki.other)
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"})
    assert get(t).status == 502
    assert o.stats()["total"] == 0


def test_host_name_mismatch_is_refused(torii, https_origin, pki):
    o = https_origin()
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "other.test"})
    assert get(t).status == 502
    wait_for(lambda: handshake_failures(t), 5, what="the handshake failure log line")
    rec = handshake_failures(t)[0]
    assert "hostname mismatch" in rec.get("reason", ""), rec
    assert rec.get("server_name") == "other.test"
    assert o.stats()["total"] == 0


def test_verify_false_accepts_any_certificate(torii, https_origin, pki):
    o = https_origin("rogue", issuer=pki.other)
    t = gateway(torii, o.port, {"verify": False, "server_name": "whatever.test"})
    r = get(t)
    assert r.status == 200, r
    assert o.stats()["tls"]["sni"] == {"whatever.test": 1}


def test_plain_http_upstream_on_a_tls_upstream_config_is_a_502_not_a_hang(torii, origin, pki):
    t = gateway(torii, origin.port, {"ca": str(pki.ca), "server_name": "origin.test"})
    start = time.monotonic()
    assert get(t).status == 502
    assert time.monotonic() - start < 3.5  # within the connect timeout (3 s)


# --------------------------------------------------------------------------- sessions and pooling

def test_new_connections_resume_the_session(torii, https_origin, pki):
    o = https_origin()
    # max_idle 0: every request opens a new connection.
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"}, max_idle=0)
    for _ in range(6):
        assert get(t).status == 200
    stats = o.stats()
    assert stats["connections"] == 6
    assert stats["tls"]["sessions"] == {"full": 1, "resumed": 5}, stats["tls"]


def test_session_reuse_off_means_full_handshakes(torii, https_origin, pki):
    o = https_origin()
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test", "session_reuse": False},
                max_idle=0)
    for _ in range(3):
        assert get(t).status == 200
    assert o.stats()["tls"]["sessions"] == {"full": 3}


def test_upstream_closing_an_idle_tls_connection_is_not_an_error(torii, https_origin, pki):
    """aiohttp closes idle connections after keepalive_timeout (close_notify, then FIN)."""
    o = https_origin(keepalive_timeout=0.3)
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"})
    for _ in range(3):
        assert get(t).status == 200
        time.sleep(0.8)
    stats = o.stats()
    assert stats["total"] == 3 and stats["connections"] == 3
    assert stats["tls"]["sessions"].get("resumed") == 2


def test_concurrent_requests_share_the_pool(torii, https_origin, pki):
    o = https_origin()
    t = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"}, workers=2)
    conns = [HttpConn(t.ports[0], timeout=10) for _ in range(8)]
    try:
        for round_ in range(5):
            for i, c in enumerate(conns):
                c.request("GET", f"/delay?ms=20&c={i}&r={round_}")
            for c in conns:
                assert c.read_response().status == 200
    finally:
        for c in conns:
            c.close()
    stats = o.stats()
    assert stats["total"] == 40
    assert stats["connections"] <= 16, stats  # at most 8 per worker, reused across rounds


# --------------------------------------------------------------------------- client certificates

def test_client_certificate_for_mutual_tls(torii, https_origin, pki):
    o = https_origin(client_ca=True)
    with_cert = {"ca": str(pki.ca), "server_name": "origin.test",
                 "cert": str(pki.path("client")), "key": str(pki.path("client", "key"))}
    t = gateway(torii, o.port, with_cert)
    assert get(t).status == 200
    assert o.stats()["tls"]["client_cn"] == {"torii-client": 1}
    t2 = gateway(torii, o.port, {"ca": str(pki.ca), "server_name": "origin.test"})
    assert get(t2).status == 502, "the origin demands a client certificate"


# --------------------------------------------------------------------------- config

def check_config(tmp_path, cli, tls):
    cfg = make_config({"app": tls_upstream(9, tls)})
    path = tmp_path / "torii.json"
    path.write_text(__import__("json").dumps(cfg))
    r = cli(["-t", "-c", str(path)])
    return r.returncode, r.stdout + r.stderr, str(path)


def test_config_errors_name_file_path_and_problem(tmp_path, cli, pki):
    (tmp_path / "notpem.pem").write_text("not a certificate\n")
    cases = [
        ({"ca": "missing.pem"}, "/upstreams/app/tls/ca", "cannot read CA bundle file"),
        ({"ca": "notpem.pem"}, "/upstreams/app/tls/ca", "cannot read a PEM CA bundle"),
        ({"verfy": False}, "/upstreams/app/tls", "verify"),
        (False, "/upstreams/app/tls", "leave \"tls\" out"),
        ({"server_name": "bad name!"}, "/upstreams/app/tls/server_name", "invalid server name"),
        ({"cert": str(pki.path("client"))}, "/upstreams/app/tls/cert", "needs both"),
        ({"cert": str(pki.path("client")), "key": str(pki.path("origin", "key"))},
         "/upstreams/app/tls/key", "does not match"),
        ({"min_version": "TLSv1.1"}, "/upstreams/app/tls/min_version", "obsolete"),
        ({"verify": False, "ca": str(pki.ca)}, "/upstreams/app/tls/ca", "no effect"),
    ]
    for tls, json_path, problem in cases:
        code, out, path = check_config(tmp_path, cli, tls)
        assert code == 1, (tls, out)
        assert path in out and json_path in out and problem in out, (tls, out)
    code, out, _ = check_config(tmp_path, cli, {"ca": str(pki.ca), "cert": str(pki.path("client")),
                                                "key": str(pki.path("client", "key"))})
    assert code == 0, out


def test_ca_bundle_is_reread_on_reload(torii, https_origin, pki, tmp_path):
    o = https_origin()
    ca = tmp_path / "ca.pem"
    shutil.copyfile(pki.other.ca, ca)  # the wrong CA first
    t = gateway(torii, o.port, {"ca": str(ca), "server_name": "origin.test"})
    assert get(t).status == 502
    shutil.copyfile(pki.ca, ca)
    os.kill(t.pid, signal.SIGHUP)
    t.wait_records(lambda recs: [r for r in recs if r.get("msg", "").startswith("configuration reloaded")] or None,
                   10, "the reload")
    wait_for(lambda: get(t).status == 200, 10, what="requests verified with the new CA")

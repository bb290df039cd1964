"""TLS termination on a listener (`listeners[].tls`): HTTPS through to the
origin with byte-exact bodies, keep-alive, X-Forwarded-Proto, ALPN, protocol
versions, certificate choice by SNI and by the client's signature algorithms
(ECDSA and RSA side by side), session resumption across workers, plain HTTP
sent to the TLS port, the handshake timeout, close_notify, `torii -t`
certificate errors and certificates re-read on SIGHUP.

Certificates are made at test time with the `openssl` CLI (a CA, leaves with
subjectAltNames, ECDSA P-256 and RSA 2048). The clients are real ones: curl,
Python's ssl module and `openssl s_client`, all on loopback.

Most tests share one 2-worker gateway (`gw`): listener 0 is TLS on
127.0.0.1, listener 1 plain HTTP on 127.0.0.2. Its certificates, in order:

    default  ECDSA  default.test     (the first one: no SNI / unknown name)
    a-ec     ECDSA  a.test           \\ the same name twice: the client gets
    a-rsa    RSA    a.test           /  the one its signature algorithms allow
    wild     ECDSA  *.b.test
    c        ECDSA  SAN c.test and c.example, but "names": ["c.test"]
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Origin, Torii
from pki import Pki, openssl as _openssl
from helpers import (
    HttpConn,
    admin_port,
    chunk_body,
    echo_header,
    make_config,
    pattern_bytes,
    run_cli,
    scrape,
    scrape_until,
    upstream,
    wait_for,
)

PLAIN_400_BODY = b"The plain HTTP request was sent to an HTTPS port\n"
CMD_TIMEOUT = 15


# --------------------------------------------------------------------------- certificates

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.serials = {
        "default": p.leaf("default", ["default.test"]),
        "a-ec": p.leaf("a-ec", ["a.test"]),
        "a-rsa": p.leaf("a-rsa", ["a.test"], kind="rsa"),
        "wild": p.leaf("wild", ["*.b.test"]),
        "c": p.leaf("c", ["c.test", "c.example"]),
        "site1": p.leaf("site1", ["site.test"]),
        "site2": p.leaf("site2", ["site.test"]),
        "site3": p.leaf("site3", ["site.test"]),
        "expired": p.leaf("expired", ["old.test"], days=-1),
    }
    return p


def cert_kind(der):
    """'ec' or 'rsa': the public key type of a DER certificate."""
    text = _openssl("x509", "-inform", "DER", "-noout", "-text", input=der).stdout.decode()
    if "id-ecPublicKey" in text:
        return "ec"
    if "rsaEncryption" in text:
        return "rsa"
    raise AssertionError(f"unknown public key type:\n{text}")


def cert_serial(der):
    return _openssl("x509", "-inform", "DER", "-noout", "-serial", input=der).stdout.decode().strip().split("=")[1]


# --------------------------------------------------------------------------- clients

def client_ctx(pki, check_hostname=True, alpn=("http/1.1",), min_version=None, max_version=None, ciphers=None):
    """A verifying client context (the test CA). Unexpected EOFs are errors (not ignored)
    so that a close without close_notify shows."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.check_hostname = check_hostname
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


class TlsConn(HttpConn):
    """HttpConn over TLS: raw HTTP/1.1 on a Python SSLSocket (ragged EOFs raise)."""

    def __init__(self, port, ctx, sni, timeout=5.0, host="127.0.0.1", session=None):
        super().__init__(port, timeout=timeout, host=host)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=sni, suppress_ragged_eofs=False,
                                        session=session)
        except BaseException:
            self.sock.close()
            raise

    def served_der(self):
        return self.sock.getpeercert(binary_form=True)


def served_der(port, pki, sni, **ctx_kw):
    """The DER certificate the server presents for this SNI (chain verified, not the name)."""
    ctx = client_ctx(pki, check_hostname=False, **ctx_kw)
    with TlsConn(port, ctx, sni) as c:
        return c.served_der()


def curl(pki, port, *urls_and_args, name="a.test", timeout=10):
    """curl over HTTPS to 127.0.0.1:port as `name` (verified against the test CA). Returns CompletedProcess (bytes)."""
    cmd = ["curl", "-q", "-sS", "-v", "--http1.1", "--noproxy", "*", "--max-time", "8",
           "--cacert", str(pki.ca), "--resolve", f"{name}:{port}:127.0.0.1", *urls_and_args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def s_client(pki, port, *args, servername=None, stdin=b"", timeout=10):
    """openssl s_client to 127.0.0.1:port; returns (exit code, stdout+stderr text)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca)]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(args)
    res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return res.returncode, res.stdout.decode("latin-1") + res.stderr.decode("latin-1")


def s_client_der(out):
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    assert m, f"no server certificate in s_client output:\n{out[-3000:]}"
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def https_request(name="a.test", target="/echo", close=True):
    hdrs = f"GET {target} HTTP/1.1\r\nHost: {name}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    return hdrs.encode()


def worker_of(t, server_port, client_port):
    """The pid of the worker holding the accepted socket 127.0.0.1:server_port <- 127.0.0.1:client_port,
    from /proc/net/tcp and /proc/<pid>/fd."""
    want_local = f"0100007F:{server_port:04X}"
    want_remote = f"0100007F:{client_port:04X}"
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want_local and cols[2] == want_remote:
                inode = cols[9]
    assert inode and inode != "0", f"no socket {want_local} <- {want_remote} in /proc/net/tcp"
    for pid in t.worker_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker of {t.pid} holds socket inode {inode}")


# --------------------------------------------------------------------------- the shared gateway

def tls_listener(certs, **tls):
    return {"address": "127.0.0.1:0", "tls": dict({"certificates": certs}, **tls)}


GW_CERTS = [
    {"cert": "certs/default.pem", "key": "certs/default.key"},
    {"cert": "certs/a-ec.pem", "key": "certs/a-ec.key"},
    {"cert": "certs/a-rsa.pem", "key": "certs/a-rsa.key"},
    {"cert": "certs/wild.pem", "key": "certs/wild.key"},
    {"cert": "certs/c.pem", "key": "certs/c.key", "names": ["c.test"]},
]


class Gateway:
    def __init__(self, t, origin):
        self.t = t
        self.origin = origin
        self.port = t.ports[0]  # TLS, 127.0.0.1
        self.plain_port = t.ports[1]  # plain HTTP, 127.0.0.2
        self.admin = None


@pytest.fixture(scope="module")
def gw(pki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gw")
    pki.copy(["default", "a-ec", "a-rsa", "wild", "c"], folder / "certs")
    origin = Origin("origin")
    t = None
    try:
        cfg = make_config({"app": upstream(origin.port)}, workers=2,
                          listeners=[tls_listener(GW_CERTS), {"address": "127.0.0.2:0"}],
                          admin={"address": "127.0.0.1:0"})
        t = Torii(cfg, str(folder / "torii.json"))
        t.wait_ready()
        g = Gateway(t, origin)
        g.admin = admin_port(t)
        yield g
    finally:
        if t is not None:
            t.stop()
        origin.stop()
        if t is not None:
            rep = t.sanitizer_report()
            if rep:
                pytest.fail(f"sanitizer error in torii pid {t.pid}:\n{rep}")


def handshakes(gw, result):
    return scrape(gw.admin).sum("torii_tls_handshakes_total", result=result)


# --------------------------------------------------------------------------- HTTPS through to the origin

def test_curl_get_2mib_byte_exact(gw, pki, tmp_path):
    out = tmp_path / "body"
    n = 2 * 1024 * 1024
    res = curl(pki, gw.port, "-o", str(out), "-w", "%{http_code}", f"https://a.test:{gw.port}/bytes/{n}")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b"200"
    assert out.read_bytes() == pattern_bytes(n)
    err = res.stderr.decode()
    assert "SSL certificate verify ok" in err, err  # verified against the CA, name a.test


def test_curl_post_1mib_byte_exact(gw, pki, tmp_path):
    body = os.urandom(1024 * 1024)
    src = tmp_path / "upload"
    src.write_bytes(body)
    res = curl(pki, gw.port, "--data-binary", f"@{src}", "-H", "Content-Type: application/octet-stream",
               f"https://a.test:{gw.port}/echo")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["method"] == "POST"
    assert doc["body_length"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_python_get_and_chunked_upload_byte_exact(gw, pki):
    n = 2 * 1024 * 1024 + 17
    body = os.urandom(1024 * 1024 + 3)
    with TlsConn(gw.port, client_ctx(pki), "a.test") as c:
        c.request("GET", f"/bytes/{n}", host="a.test")
        r = c.read_response()
        assert r.status == 200 and r.body == pattern_bytes(n)
        c.request("POST", "/echo", host="a.test", headers={"Transfer-Encoding": "chunked"},
                  body=chunk_body(body, [1, 16383, 16384, 70001]))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_length"] == len(body)
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_keep_alive_several_requests_on_one_connection(gw, pki):
    with TlsConn(gw.port, client_ctx(pki), "a.test") as c:
        for i in range(6):
            if i % 3 == 2:
                payload = f"request {i}".encode() * 1000
                c.request("POST", f"/echo?i={i}", host="a.test", body=payload)
                r = c.read_response()
                assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
            else:
                c.request("GET", f"/echo?i={i}", host="a.test")
                r = c.read_response()
                assert r.status == 200 and r.json()["query"] == f"i={i}"
            assert (r.header("Connection") or "").lower() != "close", r
    # curl: the second URL reuses the first one's connection (no new connect).
    res = curl(pki, gw.port, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
               f"https://a.test:{gw.port}/echo", f"https://a.test:{gw.port}/bytes/100000")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().split("\n")[:2] == ["200 1", "200 0"], res.stdout


def test_pipelined_requests_in_one_write(gw, pki):
    """30 requests (~40 KB of heads, more than one TLS record) in one write: all answered in order."""
    pad = "p" * 1300
    data = b"".join(
        f"GET /echo?i={i} HTTP/1.1\r\nHost: a.test\r\nX-Pad: {pad}\r\n\r\n".encode() for i in range(30))
    with TlsConn(gw.port, client_ctx(pki), "a.test") as c:
        c.send(data)
        for i in range(30):
            r = c.read_response()
            assert r.status == 200 and r.json()["query"] == f"i={i}", r


def test_x_forwarded_proto_https(gw, pki):
    with TlsConn(gw.port, client_ctx(pki), "a.test") as c:
        c.request("GET", "/echo", host="a.test", headers={"X-Forwarded-Proto": "http"})
        r = c.read_response()
    assert r.status == 200
    assert echo_header(r, "X-Forwarded-Proto") == ["https"], r.json()["headers"]
    # The plain listener beside it says http.
    with HttpConn(gw.plain_port, host="127.0.0.2") as c:
        c.request("GET", "/echo", host="a.test")
        plain = c.read_response()
    assert plain.status == 200
    assert echo_header(plain, "X-Forwarded-Proto") == ["http"]


def test_plain_listener_beside_tls_keeps_working(gw, pki):
    for _ in range(5):
        with HttpConn(gw.plain_port, host="127.0.0.2") as c:
            c.request("GET", "/bytes/5000", host="a.test")
            r = c.read_response()
            assert r.status == 200 and r.body == pattern_bytes(5000)
    # A TLS ClientHello on the plain listener does not produce a handshake.
    with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout)):
        with TlsConn(gw.plain_port, client_ctx(pki), "a.test", host="127.0.0.2", timeout=3):
            pass


# --------------------------------------------------------------------------- ALPN and versions

def test_alpn_http11(gw, pki):
    with TlsConn(gw.port, client_ctx(pki, alpn=("h2", "http/1.1")), "a.test") as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
    # A client offering only h2: no ALPN agreed, the handshake still succeeds (HTTP/1.1 works).
    with TlsConn(gw.port, client_ctx(pki, alpn=("h2",)), "a.test") as c:
        assert c.sock.selected_alpn_protocol() is None
        c.request("GET", "/echo", host="a.test")
        assert c.read_response().status == 200
    res = curl(pki, gw.port, "-o", "/dev/null", f"https://a.test:{gw.port}/echo")
    assert res.returncode == 0, res.stderr.decode()
    assert "ALPN: server accepted http/1.1" in res.stderr.decode(), res.stderr.decode()


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_versions(gw, pki, version):
    v = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    with TlsConn(gw.port, client_ctx(pki, min_version=v, max_version=v), "a.test") as c:
        assert c.sock.version() == version
        if version == "TLSv1.2":
            assert c.sock.cipher()[0].startswith("ECDHE-"), c.sock.cipher()  # forward secret
        c.request("GET", "/echo", host="a.test")
        assert c.read_response().status == 200
    flags = ["--tlsv1.2", "--tls-max", "1.2"] if version == "TLSv1.2" else ["--tlsv1.3"]
    res = curl(pki, gw.port, *flags, "-o", "/dev/null", "-w", "%{http_code}", f"https://a.test:{gw.port}/echo")
    assert res.returncode == 0 and res.stdout == b"200", res.stderr.decode()
    assert f"SSL connection using {version}" in res.stderr.decode(), res.stderr.decode()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls11_refused(gw, pki):
    # SECLEVEL=0: OpenSSL 3 clients do not even offer TLS 1.1 at the default level.
    rc, out = s_client(pki, gw.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", servername="a.test")
    assert rc != 0, out
    assert "alert protocol version" in out, out  # the server's refusal, not a local one
    assert "no protocols available" not in out, out
    ctx = client_ctx(pki, min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1,
                     ciphers="DEFAULT@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as e:
        with TlsConn(gw.port, ctx, "a.test"):
            pass
    assert "PROTOCOL_VERSION" in str(e.value).upper(), e.value
    # The gateway is fine afterwards.
    with TlsConn(gw.port, client_ctx(pki), "a.test") as c:
        c.request("GET", "/echo", host="a.test")
        assert c.read_response().status == 200


# --------------------------------------------------------------------------- certificate selection

@pytest.mark.parametrize("sni, cert", [
    ("a.test", {"a-ec", "a-rsa"}),
    ("x.b.test", {"wild"}),  # one-label wildcard
    ("other-1.b.test", {"wild"}),
    ("b.test", {"default"}),  # the wildcard does not cover its own base ...
    ("y.x.b.test", {"default"}),  # ... nor two labels
    ("default.test", {"default"}),
    ("unknown.test", {"default"}),
    (None, {"default"}),  # no SNI
    ("c.test", {"c"}),  # "names" given: only those
    ("c.example", {"default"}),  # in c's subjectAltName, but not in its "names"
])
def test_sni_selection(gw, pki, sni, cert):
    der = served_der(gw.port, pki, sni)
    assert der in {pki.der(n) for n in cert}, f"SNI {sni!r}: got serial {cert_serial(der)}, want {cert}"


def test_sni_with_s_client_and_case(gw, pki):
    for servername, want in [("a.test", {"a-ec", "a-rsa"}), ("X.B.TEST", {"wild"}), ("A.Test", {"a-ec", "a-rsa"})]:
        rc, out = s_client(pki, gw.port, "-verify_return_error", servername=servername)
        assert rc == 0, out
        assert "Verify return code: 0 (ok)" in out, out
        assert s_client_der(out) in {pki.der(n) for n in want}, (servername, out[-2000:])
    rc, out = s_client(pki, gw.port, "-verify_return_error")  # -noservername
    assert rc == 0, out
    assert s_client_der(out) == pki.der("default")


def test_hostname_verification_with_curl(gw, pki):
    for name in ("a.test", "x.b.test", "c.test", "default.test"):
        res = curl(pki, gw.port, "-o", "/dev/null", "-w", "%{http_code}", f"https://{name}:{gw.port}/echo",
                   name=name)
        assert res.returncode == 0 and res.stdout == b"200", (name, res.stderr.decode())
    # The default certificate does not name b.test: curl refuses it.
    res = curl(pki, gw.port, "-o", "/dev/null", f"https://b.test:{gw.port}/echo", name="b.test")
    assert res.returncode == 60, res.stderr.decode()  # CURLE_PEER_FAILED_VERIFICATION


@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("sigalgs, kind", [("ECDSA+SHA256", "ec"), ("RSA-PSS+SHA256:RSA+SHA256", "rsa")])
def test_ecdsa_and_rsa_by_signature_algorithms(gw, pki, proto, sigalgs, kind):
    rc, out = s_client(pki, gw.port, proto, "-sigalgs", sigalgs, "-verify_return_error", servername="a.test")
    assert rc == 0, out
    der = s_client_der(out)
    assert cert_kind(der) == kind, out[-2000:]
    assert der == pki.der("a-ec" if kind == "ec" else "a-rsa")


@pytest.mark.parametrize("cipher, name", [("ECDHE-ECDSA-AES128-GCM-SHA256", "a-ec"),
                                          ("ECDHE-RSA-AES128-GCM-SHA256", "a-rsa")])
def test_ecdsa_and_rsa_by_tls12_cipher(gw, pki, cipher, name):
    der = served_der(gw.port, pki, "a.test", max_version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    assert der == pki.der(name)


# --------------------------------------------------------------------------- resumption

@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_resumption_across_two_workers_s_client(gw, pki, tmp_path, proto):
    """One full handshake, then 20 connections resuming its session are all "Reused".
    The kernel spreads connections over the 2 workers' sockets (SO_REUSEPORT), so
    some of the 20 land on the worker that did not issue the ticket."""
    sess = tmp_path / "sess.pem"
    full_before, resumed_before = handshakes(gw, "full"), handshakes(gw, "resumed")
    rc, out = s_client(pki, gw.port, proto, "-sess_out", str(sess), "-ign_eof", servername="a.test",
                       stdin=https_request())
    assert rc == 0, out
    assert re.search(r"^New, TLSv1\.[23]", out, re.M), out[-2000:]
    assert "HTTP/1.1 200" in out
    assert sess.exists() and sess.stat().st_size > 0, out[-2000:]
    for i in range(20):
        rc, out = s_client(pki, gw.port, proto, "-sess_in", str(sess), "-ign_eof", servername="a.test",
                           stdin=https_request())
        assert rc == 0, out
        assert re.search(r"^Reused, TLSv1\.[23]", out, re.M), f"connection {i} not resumed:\n{out[-2000:]}"
        assert "HTTP/1.1 200" in out
    m = scrape_until(gw.admin, lambda m: m.sum("torii_tls_handshakes_total", result="resumed") >= resumed_before + 20)
    assert m.sum("torii_tls_handshakes_total", result="resumed") - resumed_before == 20, m.text
    assert m.sum("torii_tls_handshakes_total", result="full") - full_before == 1, m.text


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_resumption_on_the_other_worker(gw, pki, version):
    """Deterministic: which worker holds each connection is read from /proc; a ticket issued
    by one worker resumes on the other."""
    ctx = client_ctx(pki, min_version=version, max_version=version)
    with TlsConn(gw.port, ctx, "a.test") as c:
        c.request("GET", "/echo", host="a.test")
        assert c.read_response().status == 200  # TLS 1.3 tickets arrive after the handshake
        session = c.sock.session
        first_worker = worker_of(gw.t, gw.port, c.sock.getsockname()[1])
        assert not c.sock.session_reused
    assert session is not None and session.has_ticket
    seen = set()
    for _ in range(40):
        with TlsConn(gw.port, ctx, "a.test", session=session) as c:
            assert c.sock.session_reused, f"not resumed on worker {worker_of(gw.t, gw.port, c.sock.getsockname()[1])}"
            c.request("GET", "/echo", host="a.test")
            assert c.read_response().status == 200
            seen.add(worker_of(gw.t, gw.port, c.sock.getsockname()[1]))
        if seen - {first_worker}:
            break
    assert seen - {first_worker}, f"40 connections all reached worker {first_worker}"


# --------------------------------------------------------------------------- plain HTTP, close_notify

def test_plain_http_to_tls_port_gets_400_and_close(gw):
    with HttpConn(gw.port, timeout=5) as c:
        c.request("GET", "/echo", host="a.test")
        r = c.read_response()
        assert r.status == 400, r
        assert r.body == PLAIN_400_BODY
        assert c.closed_within(2.0), "connection not closed after the 400"
    # A POST with a body, too.
    with HttpConn(gw.port, timeout=5) as c:
        c.request("POST", "/echo", host="a.test", body=b"x" * 5000)
        r = c.read_response()
        assert r.status == 400 and r.body == PLAIN_400_BODY
        assert c.closed_within(2.0)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_close_notify_after_connection_close(gw, pki, version):
    ctx = client_ctx(pki, min_version=version, max_version=version)
    with TlsConn(gw.port, ctx, "a.test") as c:
        c.request("GET", "/bytes/300000", host="a.test", headers={"Connection": "close"})
        r = c.read_response()
        assert r.status == 200 and r.body == pattern_bytes(300000)
        # A clean TLS close: recv returns b"" (close_notify, SSL_ERROR_ZERO_RETURN); a TCP
        # close without close_notify would raise (OP_IGNORE_UNEXPECTED_EOF is off).
        try:
            rest = c.read_until_eof(3.0)
        except ssl.SSLError as e:
            pytest.fail(f"connection closed without close_notify: {e!r}")
        assert rest == b""


# --------------------------------------------------------------------------- TLS 1.3 only, short handshake timeout

@pytest.fixture(scope="module")
def gw13(pki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gw13")
    pki.copy(["a-ec"], folder / "certs")
    origin = Origin("origin13")
    t = None
    try:
        cfg = make_config({"app": upstream(origin.port)}, workers=1,
                          listeners=[tls_listener([{"cert": "certs/a-ec.pem", "key": "certs/a-ec.key"}],
                                                  min_version="TLSv1.3", handshake_timeout="300ms",
                                                  session_tickets=False)])
        t = Torii(cfg, str(folder / "torii.json"))
        t.wait_ready()
        yield t
    finally:
        if t is not None:
            t.stop()
        origin.stop()


def test_idle_client_closed_after_handshake_timeout(gw13):
    t = gw13
    with HttpConn(t.port, timeout=5) as c:
        start = time.monotonic()
        assert c.closed_within(2.0), "a client sending nothing is still connected after 2 s"
        took = time.monotonic() - start
    assert 0.2 <= took <= 1.0, f"closed after {took:.3f}s, handshake_timeout is 300ms"


def test_stalled_client_hello_closed_after_handshake_timeout(gw13):
    t = gw13
    with HttpConn(t.port, timeout=5) as c:
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello, then nothing
        start = time.monotonic()
        assert c.closed_within(2.0)
        took = time.monotonic() - start
    assert took <= 1.0, f"closed after {took:.3f}s"


def test_handshake_timeout_ends_with_the_handshake(gw13, pki):
    t = gw13
    with TlsConn(t.port, client_ctx(pki), "a.test") as c:
        time.sleep(0.6)  # twice the handshake timeout, idle after the handshake
        c.request("GET", "/echo", host="a.test")
        r = c.read_response()
        assert r.status == 200


def test_min_version_tls13(gw13, pki):
    t = gw13
    with pytest.raises(ssl.SSLError):
        with TlsConn(t.port, client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2), "a.test"):
            pass
    with TlsConn(t.port, client_ctx(pki), "a.test") as c:
        assert c.sock.version() == "TLSv1.3"


def test_session_tickets_off(gw13, pki):
    """"session_tickets": false: a second connection offering the first one's session
    does a full handshake."""
    t = gw13
    ctx = client_ctx(pki)
    with TlsConn(t.port, ctx, "a.test") as c:
        c.request("GET", "/echo", host="a.test")
        assert c.read_response().status == 200
        session = c.sock.session
    for _ in range(3):
        with TlsConn(t.port, ctx, "a.test", session=session) as c:
            assert not c.sock.session_reused
            c.request("GET", "/echo", host="a.test")
            assert c.read_response().status == 200


# --------------------------------------------------------------------------- torii -t

def _t_config(tmp_path, certs, **tls):
    cfg = make_config(9001, listeners=[tls_listener(certs, **tls), {"address": "127.0.0.2:0"}])
    path = tmp_path / "torii.json"
    path.write_text(json.dumps(cfg, indent=2))
    return str(path)


def _config_error(res, path, pointer, *needles):
    assert res.returncode == 1, f"exit {res.returncode}, stderr={res.stderr!r}"
    want = f"{path}: {pointer}: "
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(want)]
    assert lines, f"no line starting with {want!r} in stderr={res.stderr!r}"
    for n in needles:
        assert any(n.lower() in ln.lower() for ln in lines), f"{n!r} not in {lines!r}"


def test_check_valid_tls_config(pki, tmp_path):
    pki.copy(["default", "a-ec", "a-rsa", "wild", "c"], tmp_path / "certs")
    res = run_cli(["-t", "-c", _t_config(tmp_path, GW_CERTS)])
    assert res.returncode == 0, res.stderr


def test_check_key_does_not_match(pki, tmp_path):
    pki.copy(["default", "a-ec"], tmp_path / "certs")
    certs = [{"cert": "certs/default.pem", "key": "certs/default.key"},
             {"cert": "certs/a-ec.pem", "key": "certs/default.key"}]
    path = _t_config(tmp_path, certs)
    res = run_cli(["-t", "-c", path])
    _config_error(res, path, "/listeners/0/tls/certificates/1/key", "default.key")
    assert re.search(r"does not match|mismatch", res.stderr), res.stderr


def test_check_rsa_key_for_ecdsa_cert(pki, tmp_path):
    pki.copy(["a-ec", "a-rsa"], tmp_path / "certs")
    path = _t_config(tmp_path, [{"cert": "certs/a-ec.pem", "key": "certs/a-rsa.key"}])
    _config_error(run_cli(["-t", "-c", path]), path, "/listeners/0/tls/certificates/0/key")


def test_check_cert_not_pem(pki, tmp_path):
    pki.copy(["default", "a-ec"], tmp_path / "certs")
    (tmp_path / "certs" / "garbage.pem").write_text("this is not a certificate\n")
    certs = [{"cert": "certs/default.pem", "key": "certs/default.key"},
             {"cert": "certs/garbage.pem", "key": "certs/a-ec.key"}]
    path = _t_config(tmp_path, certs)
    _config_error(run_cli(["-t", "-c", path]), path, "/listeners/0/tls/certificates/1/cert", "garbage.pem")


def test_check_cert_is_a_der_file(pki, tmp_path):
    pki.copy(["a-ec"], tmp_path / "certs")
    (tmp_path / "certs" / "a-ec.der").write_bytes(pki.der("a-ec"))
    path = _t_config(tmp_path, [{"cert": "certs/a-ec.der", "key": "certs/a-ec.key"}])
    _config_error(run_cli(["-t", "-c", path]), path, "/listeners/0/tls/certificates/0/cert")


def test_check_missing_files(pki, tmp_path):
    pki.copy(["a-ec"], tmp_path / "certs")
    path = _t_config(tmp_path, [{"cert": "certs/a-ec.pem", "key": "certs/missing.key"}])
    _config_error(run_cli(["-t", "-c", path]), path, "/listeners/0/tls/certificates/0/key", "missing.key")
    path = _t_config(tmp_path, [{"cert": "certs/missing.pem", "key": "certs/a-ec.key"}])
    _config_error(run_cli(["-t", "-c", path]), path, "/listeners/0/tls/certificates/0/cert", "missing.pem")


def test_check_expired_certificate_warns(pki, tmp_path):
    pki.copy(["a-ec", "expired"], tmp_path / "certs")
    certs = [{"cert": "certs/a-ec.pem", "key": "certs/a-ec.key"},
             {"cert": "certs/expired.pem", "key": "certs/expired.key"}]
    res = run_cli(["-t", "-c", _t_config(tmp_path, certs)])
    assert res.returncode == 0, res.stderr
    assert "expired" in res.stderr and "/listeners/0/tls/certificates/1/cert" in res.stderr, res.stderr


# --------------------------------------------------------------------------- reload

def _reload_config(origin_port):
    cfg = make_config({"app": upstream(origin_port)}, workers=2,
                      listeners=[tls_listener([{"cert": "certs/site.pem", "key": "certs/site.key"}]),
                                 {"address": "127.0.0.2:0"}])
    cfg["timeouts"]["drain"] = "2s"
    return cfg


def _sighup_and_wait(t, msg_prefix, n):
    """SIGHUP, then wait for the n-th log line starting with msg_prefix."""
    os.kill(t.pid, signal.SIGHUP)
    return t.wait_records(lambda recs: (lambda hits: hits if len(hits) >= n else None)(
        [r for r in recs if r.get("msg", "").startswith(msg_prefix)]), 10, f"{n} x {msg_prefix!r}")


def test_reload_serves_the_new_certificate(origin, torii, pki, tmp_path):
    pki.copy(["site1"], tmp_path / "certs", as_names=["site"])
    t = torii(_reload_config(origin.port))
    port = t.ports[0]
    assert served_der(port, pki, "site.test") == pki.der("site1")
    pids = set(t.worker_pids())
    # Only the certificate files change; the config file stays as it is.
    pki.copy(["site2"], tmp_path / "certs", as_names=["site"])
    _sighup_and_wait(t, "configuration reloaded", 1)
    wait_for(lambda: served_der(port, pki, "site.test") == pki.der("site2"), 5, what="the new certificate")
    assert cert_serial(served_der(port, pki, "site.test")) == pki.serials["site2"] != pki.serials["site1"]
    for _ in range(10):  # every new connection, whichever worker
        assert served_der(port, pki, "site.test") == pki.der("site2")
    with TlsConn(port, client_ctx(pki), "site.test") as c:
        c.request("GET", "/echo", host="site.test")
        assert c.read_response().status == 200
    wait_for(lambda: not (set(t.worker_pids()) & pids), 10, what="old workers gone")


def test_reload_with_broken_certificate_is_refused(origin, torii, pki, tmp_path):
    pki.copy(["site1"], tmp_path / "certs", as_names=["site"])
    t = torii(_reload_config(origin.port))
    port = t.ports[0]
    pids = sorted(t.worker_pids())
    # 1. The certificate is not PEM.
    (tmp_path / "certs" / "site.pem").write_text("garbage\n")
    rec = _sighup_and_wait(t, "configuration reload failed", 1)[-1]
    assert t.config_path in rec.get("error", "") and "/listeners/0/tls/certificates/0/cert" in rec["error"], rec
    # 2. A valid certificate whose key does not match.
    shutil.copyfile(pki.path("site2"), tmp_path / "certs" / "site.pem")
    rec = _sighup_and_wait(t, "configuration reload failed", 2)[-1]
    assert "/listeners/0/tls/certificates/0/key" in rec.get("error", ""), rec
    assert t.proc.poll() is None, "the master exited"
    assert sorted(t.worker_pids()) == pids
    for _ in range(10):
        assert served_der(port, pki, "site.test") == pki.der("site1")
    with TlsConn(port, client_ctx(pki), "site.test") as c:
        c.request("GET", "/echo", host="site.test")
        assert c.read_response().status == 200
    # Fixed files: the next SIGHUP works.
    pki.copy(["site3"], tmp_path / "certs", as_names=["site"])
    _sighup_and_wait(t, "configuration reloaded", 1)
    wait_for(lambda: served_der(port, pki, "site.test") == pki.der("site3"), 5, what="the fixed certificate")


def test_session_resumes_after_reload(origin, torii, pki, tmp_path):
    """Documented: tickets issued before a reload keep working."""
    pki.copy(["site1"], tmp_path / "certs", as_names=["site"])
    t = torii(_reload_config(origin.port))
    port = t.ports[0]
    ctx = client_ctx(pki)
    with TlsConn(port, ctx, "site.test") as c:
        c.request("GET", "/echo", host="site.test")
        assert c.read_response().status == 200
        session = c.sock.session
    assert session is not None and session.has_ticket
    pids = set(t.worker_pids())
    _sighup_and_wait(t, "configuration reloaded", 1)
    wait_for(lambda: not (set(t.worker_pids()) & pids), 10, what="old workers gone")
    for _ in range(4):
        with TlsConn(port, ctx, "site.test", session=session) as c:
            assert c.sock.session_reused
            c.request("GET", "/echo", host="site.test")
            assert c.read_response().status == 200


def _ticket_key_name(sess_file):
    """The first 16 bytes of a saved session's ticket: the name of the key that encrypted it."""
    text = _openssl("sess_id", "-in", sess_file, "-text", "-noout").stdout.decode()
    m = re.search(r"TLS session ticket:\n\s*0000 - ([0-9a-f -]{47})", text)
    assert m, text
    return m.group(1).replace("-", " ").replace(" ", "")


def test_scheduled_ticket_key_rotation_reaches_every_worker(origin, torii, pki, tmp_path):
    """Every ticket_key_rotation the master sends a new key to the workers:
    new tickets carry the new key's name, tickets under the previous key
    still resume, and tickets under the new key resume on either worker."""
    pki.copy(["site1"], tmp_path / "certs", as_names=["site"])
    cfg = _reload_config(origin.port)
    cfg["listeners"][0]["tls"]["ticket_key_rotation"] = "10s"
    t = torii(cfg)
    port = t.ports[0]
    before, after = tmp_path / "before.pem", tmp_path / "after.pem"
    rc, out = s_client(pki, port, "-sess_out", str(before), "-ign_eof", servername="site.test",
                       stdin=https_request("site.test"))
    assert rc == 0 and "New," in out, out
    t.wait_records(lambda recs: [r for r in recs if r.get("msg") == "TLS session-ticket key rotated"] or None,
                   15, "a scheduled rotation")
    rc, out = s_client(pki, port, "-sess_out", str(after), "-ign_eof", servername="site.test",
                       stdin=https_request("site.test"))
    assert rc == 0 and "New," in out, out
    assert _ticket_key_name(before) != _ticket_key_name(after)
    for _ in range(4):  # the previous key still decrypts
        rc, out = s_client(pki, port, "-sess_in", str(before), "-ign_eof", servername="site.test",
                           stdin=https_request("site.test"))
        assert rc == 0 and "Reused," in out, out
    # A ticket under the new key resumes on both workers: each got the key.
    ctx = client_ctx(pki)
    with TlsConn(port, ctx, "site.test") as c:
        c.request("GET", "/echo", host="site.test")
        assert c.read_response().status == 200
        session = c.sock.session
    resumed_on = set()
    for _ in range(40):
        with TlsConn(port, ctx, "site.test", session=session) as c:
            assert c.sock.session_reused
            resumed_on.add(worker_of(t, port, c.sock.getsockname()[1]))
            c.request("GET", "/echo", host="site.test")
            assert c.read_response().status == 200
        if len(resumed_on) == 2:
            break
    assert len(resumed_on) == 2, "every connection reached one worker"

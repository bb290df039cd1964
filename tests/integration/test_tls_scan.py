"""testssl.sh against a Torii TLS listener: no finding rated HIGH or CRITICAL.

The test certificate is made to pass the certificate checks a real one
would (a CA testssl is told to trust, a year of validity, a CRL
distribution point), so whatever remains is about Torii's TLS setup:
protocols, ciphers, renegotiation, compression, known vulnerabilities.
"""

import json
import shutil
import subprocess

from helpers import make_config, route

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificate(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "400", "-subj", "/CN=Torii scan test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key",
            "-out", "leaf.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "crlDistributionPoints=URI:http://127.0.0.1:9/ca.crl\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "365", "-extfile", "ext.cnf", cwd=d)
    # The chain the server sends: leaf then CA.
    (d / "chain.pem").write_text((d / "leaf.pem").read_text() + (d / "ca.pem").read_text())


def test_testssl_finds_nothing_high_or_critical(origin, torii, tmp_path):
    assert TESTSSL, "testssl.sh is not installed (scripts/install-deps.sh installs it)"
    make_certificate(tmp_path)
    cfg = make_config(origin.port, workers=1, routes=[route("app")])
    cfg["listeners"] = [{"address": "127.0.0.1:0",
                         "tls": {"certificates": [{"cert": str(tmp_path / "chain.pem"),
                                                   "key": str(tmp_path / "leaf.key")}]}}]
    t = torii(cfg)
    report = tmp_path / "scan.json"
    proc = subprocess.run(
        [TESTSSL, "--quiet", "--fast", "--warnings", "off", "--color", "0", "--severity", "HIGH",
         "--add-ca", str(tmp_path / "ca.pem"), "--jsonfile", str(report), f"https://localhost:{t.port}/"],
        capture_output=True, text=True, timeout=240)
    assert report.exists(), f"testssl wrote no report (exit {proc.returncode}): {proc.stdout[-2000:]}"
    findings = json.loads(report.read_text())
    assert isinstance(findings, list) and findings, "an empty report would hide a scan that did not run"
    ran = {f.get("id") for f in findings}
    assert "scanProblem" not in ran, [f for f in findings if f.get("id") == "scanProblem"]
    bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
    assert not bad, "\n".join(f"{f['id']}: {f['severity']}: {f.get('finding')}" for f in bad)

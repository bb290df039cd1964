"""A test PKI made at test time with the `openssl` CLI: a CA (EC P-256) and
leaf certificates it signs (ECDSA P-256 or RSA 2048; server or client
certificates, with DNS and IP subjectAltNames). Nothing here is in git."""

import os
import shutil
import ssl
import subprocess

CMD_TIMEOUT = 15


def openssl(*args, cwd=None, input=None, timeout=CMD_TIMEOUT):
    res = subprocess.run(["openssl", *[str(a) for a in args]], cwd=cwd, input=input, capture_output=True,
                         timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    if res.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed: {res.stderr!r}")
    return res


class Pki:
    """A test CA in `folder` and leaf certificates signed by it."""

    CA_CNF = (
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = Torii Test CA\n"
        "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
    )

    def __init__(self, folder):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.pem"
        self._serial = 0x1000
        (self.dir / "ca.cnf").write_text(self.CA_CNF)
        openssl("req", "-x509", "-new", "-config", "ca.cnf", "-extensions", "v3_ca",
                 "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", cwd=self.dir)

    def leaf(self, name, dns, kind="ec", days=2, ips=(), eku="serverAuth"):
        """Key `name`.key and certificate `name`.pem for the DNS names `dns`
        (and IP addresses `ips`); `eku` "clientAuth" makes a client
        certificate. Returns the serial (hex)."""
        self._serial += 1
        serial = self._serial
        key, csr, ext = f"{name}.key", f"{name}.csr", f"{name}.ext"
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key, cwd=self.dir)
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key, cwd=self.dir)
        openssl("req", "-new", "-key", key, "-subj", f"/CN={dns[0]}", "-out", csr, cwd=self.dir)
        usage = "digitalSignature" if kind == "ec" else "digitalSignature,keyEncipherment"
        (self.dir / ext).write_text(
            "basicConstraints = critical,CA:FALSE\n"
            f"keyUsage = critical,{usage}\n"
            f"extendedKeyUsage = {eku}\n"
            f"subjectAltName = {','.join(['DNS:' + d for d in dns] + ['IP:' + i for i in ips])}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
        openssl("x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", hex(serial),
                 "-days", str(days), "-extfile", ext, "-out", f"{name}.pem", cwd=self.dir)
        return f"{serial:X}"

    def path(self, name, ext="pem"):
        return self.dir / f"{name}.{ext}"

    def der(self, name):
        return ssl.PEM_cert_to_DER_cert(self.path(name).read_text())

    def copy(self, names, dest, as_names=None):
        """Copy `name`.pem/.key into dest (optionally renamed)."""
        dest.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(names):
            target = (as_names or names)[i]
            for ext in ("pem", "key"):
                tmp = dest / f".{target}.{ext}.tmp"
                shutil.copyfile(self.path(n, ext), tmp)
                os.replace(tmp, dest / f"{target}.{ext}")  # atomic: a reload never reads half a file

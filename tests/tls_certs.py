"""Throw-away TLS material for tests: a private CA and a server certificate it signs.

``make_tls_files(directory)`` writes PEM files and returns their paths; nothing here touches the
system trust store. Keys are EC P-256, so generation takes milliseconds. It uses the ``cryptography``
package when the environment has it, else the ``openssl`` command line (the project's dev dependencies
do not list ``cryptography``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_CRYPTOGRAPHY = False
else:
    HAVE_CRYPTOGRAPHY = True

DEFAULT_HOSTNAMES: tuple[str, ...] = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files written by :func:`make_tls_files`."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for a server presenting the certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "elastic-logging-plugin tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _san(hostnames: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    path.chmod(0o600)


def make_tls_files(directory: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
                   prefix: str = "es") -> TlsFiles:
    """Create ``<prefix>-ca.pem``, ``<prefix>-server.pem`` and ``<prefix>-server.key`` in ``directory``.

    The server certificate names ``hostnames`` (DNS names or IP addresses) in its subjectAltName.
    Call it twice with different prefixes to get an unrelated CA for "wrong CA" tests.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / f"{prefix}-ca.pem", directory / f"{prefix}-server.pem",
                     directory / f"{prefix}-server.key")
    if not HAVE_CRYPTOGRAPHY:
        _make_with_openssl(files, hostnames, prefix)
        return files
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{prefix} test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0] if hostnames else "server")).issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.server_key, server_key)
    return files


def _make_with_openssl(files: TlsFiles, hostnames: Sequence[str], prefix: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("make_tls_files needs the cryptography package or the openssl command")
    work = files.ca_cert.parent
    ca_key, csr, ext = work / f"{prefix}-ca.key", work / f"{prefix}-server.csr", work / f"{prefix}-server.ext"
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hostnames)
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
                   f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\nauthorityKeyIdentifier=keyid\n")
    org = "/O=elastic-logging-plugin tests"
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", *ec_key, "-keyout", str(ca_key), "-out", str(files.ca_cert), "-days", "2",
        "-subj", f"{org}/CN={prefix} test CA", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash")
    run("req", *ec_key, "-keyout", str(files.server_key), "-out", str(csr),
        "-subj", f"{org}/CN={hostnames[0] if hostnames else 'server'}")
    run("x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey", str(ca_key), "-set_serial",
        str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-out", str(files.server_cert),
        "-extfile", str(ext))
    files.server_key.chmod(0o600)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

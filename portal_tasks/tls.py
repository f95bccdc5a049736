"""The user's own TLS: a per-user CA and one certificate (scheduler, workers and clients), made on first use.

Made on the laptop with ``cryptography`` and pushed to the host's ``~/.portal/tls/`` (dir 0700, files
0600). The CA key is never kept: nothing else is ever signed, so another user's certificate (their own
CA) and a certificate-less client are refused alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import shlex
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .remote import layout
from .target import Target

VALID_DAYS = 3650


@dataclass(frozen=True)
class TlsPaths:
    """Where the TLS files sit on the host."""

    dir: str

    @property
    def ca(self) -> str:
        return f"{self.dir}/ca.pem"

    @property
    def cert(self) -> str:
        return f"{self.dir}/cert.pem"

    @property
    def key(self) -> str:
        return f"{self.dir}/key.pem"


def paths(home: str) -> TlsPaths:
    return TlsPaths(layout.tls_dir(home))


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "portal"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_bundle(user: str, host: str) -> dict[str, str]:
    """PEM texts ``ca.pem``, ``cert.pem``, ``key.pem``: a fresh CA and one certificate signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    until = now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"portal CA of {user}@{host}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(f"{user}@{host}")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        "ca.pem": ca.public_bytes(pem).decode(),
        "cert.pem": cert.public_bytes(pem).decode(),
        "key.pem": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    }


def ensure(target: Target) -> TlsPaths:
    """The user's TLS files on the host, made and pushed on first use (a concurrent push that won is kept)."""
    status = target.link.helper("tls-status", {})
    if not status["exists"]:
        facts = target.facts()
        status = target.link.helper("tls-install", {"files": make_bundle(facts["user"], facts.get("hostname") or target.host)})
        if status.get("installed"):
            target.say(f"{target.host}: made your TLS certificate in {status['dir']} (Dask accepts only it).")
    return TlsPaths(status["dir"])


def explain_lines(tls: TlsPaths, user: str) -> list[str]:
    """The openssl commands a person types to make the same files (skipped when they exist)."""
    d = shlex.quote(tls.dir)
    ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    make = " && ".join([
        f"mkdir -p {d} && chmod 700 {d} && cd {d}",
        f"openssl req -x509 {ec_key} -keyout ca-key.pem -out ca.pem -days {VALID_DAYS} "
        f"-subj {shlex.quote('/O=portal/CN=portal CA of ' + user)}",
        f"openssl req {ec_key} -keyout key.pem -out cert.csr -subj {shlex.quote('/O=portal/CN=' + user)}",
        f"openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days {VALID_DAYS}",
        "rm -f ca-key.pem cert.csr ca.srl && chmod 600 ca.pem cert.pem key.pem && cd - >/dev/null",
    ])
    return [f"test -f {shlex.quote(tls.cert)} || (umask 077 && {make})"]

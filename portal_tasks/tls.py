"""The user's own TLS: a per-user CA and one certificate (scheduler, workers and clients), made on first use.

Made on the laptop with ``cryptography`` and pushed to the host's ``~/.portal/tls/`` (dir 0700, files
0600) on the helper's stdin. The CA key is never kept: nothing else is ever signed, so another user's
certificate (their own CA) and a certificate-less client are refused alike. ``portal tls --rotate``
replaces the whole set; an expired set is replaced by the next `up` on its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is imported where a set is made or read: most `portal` commands never do
    from cryptography import x509

from .remote.hostpaths import tls_dir
from .target import Target

#: A year: a leaked set stops opening the user's clusters on its own; `up` replaces an expired one.
VALID_DAYS = 365
#: From this many days before the end, `up` and `portal tls` say when to rotate.
WARN_DAYS = 30


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
    return TlsPaths(tls_dir(home))


def _name(common: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "portal"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def load() -> None:
    """Import what :func:`make_bundle` uses, ahead (while the laptop waits for the host)."""
    from cryptography import x509  # noqa: F401
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401


def make_bundle(user: str, host: str, start: datetime.datetime | None = None) -> dict[str, str]:
    """PEM texts ``ca.pem``, ``cert.pem``, ``key.pem``: a fresh CA and one certificate signed by it,
    valid VALID_DAYS from ``start`` (default: a day ago, so clocks a little behind accept it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = start or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
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


def not_after(cert_pem: str) -> datetime.datetime:
    """When the certificate stops being valid (UTC)."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def days_left(status: dict[str, Any], now: datetime.datetime | None = None) -> float | None:
    """Days until the host's certificate (a ``tls-status`` answer) ends; None when there is none."""
    if not status.get("exists") or not status.get("cert"):
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (not_after(status["cert"]) - now).total_seconds() / 86400


def needed(status: dict[str, Any], user: str, host: str) -> dict[str, Any] | None:
    """What the host must be given for a cluster (pure): a new set ({"files", "replace"}) when it has none
    or its certificate ended, else None."""
    left = days_left(status)
    if status.get("exists") and (left is None or left > 0):
        return None
    return {"files": make_bundle(user, host), "replace": bool(status.get("exists"))}


def end_note(status: dict[str, Any], host: str) -> str | None:
    """One line when the certificate ends within WARN_DAYS (it still works), else None."""
    left = days_left(status)
    if left is None or left <= 0 or left >= WARN_DAYS:
        return None
    return (f"{host}: note: your TLS certificate ends on {not_after(status['cert']):%Y-%m-%d}; run "
            f"`portal tls --rotate --host {host}` when your clusters may restart.")


def installed_lines(installed: dict[str, Any], replaced: bool, host: str) -> list[str]:
    """What the user reads once the host installed a set (``tls-install``'s answer)."""
    if replaced:
        return [f"{host}: your TLS certificate had expired; made a new one in {installed['dir']} "
                "(clusters started with the old one are replaced)."]
    if installed.get("installed"):
        return [f"{host}: made your TLS certificate in {installed['dir']} (Dask accepts only it)."]
    return []  # another portal installed one meanwhile: that one is kept


def install(target: Target, *, replace: bool) -> dict[str, Any]:
    """Make a new set on the laptop and install it on the host (payload on the helper's stdin)."""
    facts = target.facts()
    files = make_bundle(facts["user"], facts.get("hostname") or target.host)
    return dict(target.link.helper("tls-install", {"files": files, "replace": replace}))


def ensure(target: Target) -> TlsPaths:
    """The user's TLS files on the host on their own (`up` sends them in its plan, :func:`needed`): made on
    first use (a concurrent push that won is kept), replaced when expired, with a note when the end is near."""
    status = target.link.helper("tls-status", {})
    facts = target.facts()
    given = needed(status, facts["user"], facts.get("hostname") or target.host)
    if given is not None:
        status = dict(target.link.helper("tls-install", given))
        lines = installed_lines(status, given["replace"], target.host)
    else:
        lines = [note for note in [end_note(status, target.host)] if note]
    for line in lines:
        target.say(line)
    return TlsPaths(status["dir"])


def _make_commands(directory: str, user: str) -> str:
    """openssl commands that make a CA, a certificate and a key in ``directory`` (the CA key not kept)."""
    d = shlex.quote(directory)
    ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    return " && ".join([
        f"mkdir -p {d} && chmod 700 {d} && cd {d}",
        f"openssl req -x509 {ec_key} -keyout ca-key.pem -out ca.pem -days {VALID_DAYS} "
        f"-subj {shlex.quote('/O=portal/CN=portal CA of ' + user)}",
        f"openssl req {ec_key} -keyout key.pem -out cert.csr -subj {shlex.quote('/O=portal/CN=' + user)}",
        f"openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days {VALID_DAYS}",
        "rm -f ca-key.pem cert.csr ca.srl && chmod 600 ca.pem cert.pem key.pem && cd - >/dev/null",
    ])


def explain_lines(tls: TlsPaths, user: str) -> list[str]:
    """The openssl commands a person types to make the same files (skipped when they exist)."""
    return [f"test -f {shlex.quote(tls.cert)} || (umask 077 && {_make_commands(tls.dir, user)})"]


def explain_rotate(tls: TlsPaths, user: str) -> list[str]:
    """The commands a person types to replace the files with a new set (by hand not in one rename)."""
    d, new = shlex.quote(tls.dir), shlex.quote(tls.dir + ".new")
    return [
        f"rm -rf {new} && (umask 077 && {_make_commands(tls.dir + '.new', user)})",
        f'rm -rf "$(readlink -f {d})" {d} && mv {new} {d}',
        "# running clusters keep the old set until your next `portal up` for their env replaces them",
    ]

"""`tls`: the user's TLS certificate on the host (who, until when), and `--rotate` to replace it.

Rotation installs a new CA, certificate and key in one rename. Clusters that run keep the old set
in memory until the next `up`/`cluster` of their env finds that they no longer accept the new
certificate (the health handshake fails) and starts a new cluster in their place.
"""

from __future__ import annotations

from typing import Any

from .. import tls as material
from ..target import Explained, Target

AFTER_ROTATION = (
    "What this does to what runs: your running Dask clusters keep working with the old certificate until your "
    "next `portal up` (or `portal cluster`) for their env, which replaces each with a new cluster: what its "
    "workers hold in memory is lost (save it first), and IPython sessions and notebook kernels connected to it "
    "lose their client (run `client = Client()` in them again). IPython and notebooks started after that "
    "connect by themselves; the old certificate opens nothing new."
)


def run(target: Target, rotate: bool = False) -> dict[str, Any]:
    """Show the certificate, or (rotate) replace it; returns what `portal tls` prints as facts."""
    if rotate:
        status = material.install(target, replace=True)
        report = _report(target, status)
        print(f"{target.host}: new TLS CA, certificate and key in {report['dir']} (valid until {report['valid_until']}).")
        print(AFTER_ROTATION)
        return report
    report = _report(target, target.link.helper("tls-status", {}))
    if not report["exists"]:
        print(f"{target.host}: no TLS certificate yet in {report['dir']}; the first `portal up` makes one.")
    else:
        print(f"{target.host}: TLS certificate in {report['dir']}, valid until {report['valid_until']} "
              f"({report['days_left']} days left). Rotate it with `portal tls --rotate --host {target.host}`.")
    return report


def _report(target: Target, status: dict[str, Any]) -> dict[str, Any]:
    left = material.days_left(status)
    report: dict[str, Any] = {"host": target.host, "dir": status["dir"], "exists": bool(status.get("exists"))}
    if left is not None:
        report["valid_until"] = f"{material.not_after(status['cert']):%Y-%m-%d}"
        report["days_left"] = int(left)
    return report


def explain(target: Target, rotate: bool = False) -> Explained:
    facts = target.facts()
    paths = material.paths(facts["home"])
    if rotate:
        return Explained(remote=material.explain_rotate(paths, facts["user"]))
    return Explained(remote=[f"openssl x509 -in {paths.cert} -noout -subject -enddate"])

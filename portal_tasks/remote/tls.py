"""Host-side TLS verbs: the user's CA, certificate and key in ``~/.portal/tls`` (0700, files 0600).

``~/.portal/tls`` is a symlink to a private ``~/.portal/tls-XXXXXXXX`` directory that holds one
complete set, so a new set (``tls-install`` with ``replace``, i.e. ``portal tls --rotate``) takes
over in one rename: nobody ever sees a certificate of one set with the key of another. An older
install's plain directory is moved aside the first time it is replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from . import hostpaths
from .common import HOME, STATE_DIR, Failure, private_dirs

TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
#: A ``tls-*`` set that lost a race (or whose install died) is removed once it is this old.
LEFTOVER_SECONDS = 3600


def tls_dir() -> str:
    """~/.portal/tls: one set for every server that shares the home."""
    return hostpaths.tls_dir(HOME)


def tls_status(_payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``tls-status``: do the user's CA, certificate and key exist (modes fixed to 0700/0600);
    with the certificate's text (public) so the laptop can read its expiry."""
    path = tls_dir()
    if not all(os.path.isfile(os.path.join(path, name)) for name in TLS_FILES):
        return {"exists": False, "dir": path}
    os.chmod(path, 0o700)
    for name in TLS_FILES:
        os.chmod(os.path.join(path, name), 0o600)
    with open(os.path.join(path, "cert.pem")) as fh:
        cert = fh.read()
    return {"exists": True, "dir": path, "cert": cert}


def _write_set(files: dict[str, str]) -> str:
    """A new private directory beside ``tls`` with the three files, written and synced."""
    private_dirs(STATE_DIR)
    os.chmod(STATE_DIR, 0o700)
    new = tempfile.mkdtemp(prefix="tls-", dir=STATE_DIR)  # mode 0700
    for name in TLS_FILES:
        fd = os.open(os.path.join(new, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(files[name])
            fh.flush()
            os.fsync(fh.fileno())
    return new


def _swap(new: str) -> str | None:
    """Point ``tls`` at ``new`` in one rename; returns the directory the old set was in (or None)."""
    link = tls_dir()
    old = None
    if os.path.islink(link):
        old = os.path.join(STATE_DIR, os.readlink(link))
    elif os.path.isdir(link):  # an older portal's plain directory: moved aside (an instant without tls)
        old = tempfile.mkdtemp(prefix="tls-", dir=STATE_DIR)
        os.rename(link, os.path.join(old, "set"))
    tmp_link = f"{link}.{os.getpid()}.link"
    os.symlink(os.path.basename(new), tmp_link)
    os.rename(tmp_link, link)
    return old


def _prune_leftovers(current: str) -> None:
    """Remove old ``tls-*`` sets that are not ``current`` (lost races, installs that died);
    a young one may be another install's that is about to take over."""
    for name in os.listdir(STATE_DIR):
        path = os.path.join(STATE_DIR, name)
        if not name.startswith("tls-") or os.path.islink(path) or os.path.realpath(path) == current:
            continue
        try:
            if time.time() - os.stat(path).st_mtime > LEFTOVER_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def tls_install(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``tls-install`` {files, replace}: put a new set in place atomically.

    Without ``replace`` (first use) a set that is already there wins (two first `up` at once);
    with it (rotation) the new set replaces the old one.
    """
    link = tls_dir()
    new = _write_set(payload["files"])
    replace = bool(payload.get("replace")) or (os.path.islink(link) and not os.path.exists(link))
    installed = True
    old = None
    if replace:
        old = _swap(new)
    else:
        try:
            os.symlink(os.path.basename(new), link)  # exclusive: fails when a set is there
        except FileExistsError:
            shutil.rmtree(new, ignore_errors=True)
            installed = False
    if old and os.path.realpath(old) != os.path.realpath(link):
        shutil.rmtree(old, ignore_errors=True)
    _prune_leftovers(os.path.realpath(link))
    status = tls_status({})
    if not status["exists"]:
        raise Failure(f"could not install the TLS files in {link}.", "ClusterError",
                      hint="Remove that directory and run the command again.")
    return dict(status, installed=installed, replaced=bool(replace and installed))


VERBS = {"tls-status": tls_status, "tls-install": tls_install}

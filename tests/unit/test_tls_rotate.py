"""TLS sets: validity, expiry notes, rotation in one rename on the host (run here through the local link)."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import pytest

from portal_tasks import tls
from portal_tasks.config import resolve
from portal_tasks.link.local import LocalLink
from portal_tasks.commands import tls as tls_step
from portal_tasks.target import Target

NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def said() -> list[str]:
    """What the steps told the user."""
    return []


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[str]) -> Target:
    monkeypatch.setenv("HOME", str(tmp_path))
    return Target(settings=resolve(None, "localhost"), link=LocalLink(resolve(None, "localhost")), say=said.append)


def test_a_new_set_is_valid_for_a_year():
    bundle = tls.make_bundle("alice", "matagorda")
    left = tls.days_left({"exists": True, "cert": bundle["cert.pem"]}, NOW)
    assert left is not None and tls.VALID_DAYS - 2 < left <= tls.VALID_DAYS


def test_days_left_is_none_without_a_certificate():
    assert tls.days_left({"exists": False}) is None
    assert tls.days_left({"exists": True}) is None  # an older helper's answer


def read_set(home: Path) -> dict[str, str]:
    return {name: (home / ".portal" / "tls" / name).read_text() for name in ("ca.pem", "cert.pem", "key.pem")}


def test_first_use_makes_a_private_set_and_keeps_it(target, tmp_path):
    paths = tls.ensure(target)
    assert paths.dir == str(tmp_path / ".portal" / "tls")
    first = read_set(tmp_path)
    assert tls.ensure(target).dir == paths.dir and read_set(tmp_path) == first
    real = Path(os.path.realpath(paths.dir))
    assert stat.S_IMODE(real.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((real / n).stat().st_mode) == 0o600 for n in first)


def test_a_second_first_install_keeps_the_set_that_won(target, tmp_path):
    tls.ensure(target)
    first = read_set(tmp_path)
    again = tls.install(target, replace=False)
    assert again["installed"] is False and read_set(tmp_path) == first
    assert [p.name for p in (tmp_path / ".portal").iterdir() if p.name.startswith("tls-")] == [
        os.path.basename(os.readlink(tmp_path / ".portal" / "tls"))]


def test_rotate_replaces_every_file_and_leaves_one_set(target, tmp_path, capsys):
    tls.ensure(target)
    before = read_set(tmp_path)
    report = tls_step.run(target, rotate=True)
    after = read_set(tmp_path)
    assert all(before[name] != after[name] for name in before)
    assert report["days_left"] >= tls.VALID_DAYS - 2
    sets = [p for p in (tmp_path / ".portal").iterdir() if p.name.startswith("tls")]
    assert len(sets) == 2 and (tmp_path / ".portal" / "tls").is_symlink()  # the link and its one set
    out = capsys.readouterr().out
    assert "replaces each with a new cluster" in out and "PRIVATE" not in out


def test_rotate_moves_an_older_plain_directory_aside(target, tmp_path):
    old = tmp_path / ".portal" / "tls"
    old.mkdir(parents=True, mode=0o700)
    for name, text in tls.make_bundle("alice", "h").items():
        (old / name).write_text(text)
    before = read_set(tmp_path)
    tls_step.run(target, rotate=True)
    assert old.is_symlink() and read_set(tmp_path)["key.pem"] != before["key.pem"]
    assert len([p for p in old.parent.iterdir() if p.name.startswith("tls")]) == 2


def expired_bundle() -> dict[str, str]:
    return tls.make_bundle("alice", "h", start=NOW - datetime.timedelta(days=tls.VALID_DAYS + 5))


def test_an_expired_set_is_replaced_by_the_next_up(target, tmp_path, said):
    link = tmp_path / ".portal"
    link.mkdir(mode=0o700)
    (link / "tls").mkdir(mode=0o700)
    for name, text in expired_bundle().items():
        (link / "tls" / name).write_text(text)
    assert tls.days_left(target.link.helper("tls-status", {})) < 0
    tls.ensure(target)
    assert tls.days_left(target.link.helper("tls-status", {})) > tls.VALID_DAYS - 2
    assert any("had expired" in line for line in said)


def test_explain_rotate_names_the_new_set_and_the_swap():
    lines = tls.explain_rotate(tls.paths("/home/alice"), "alice")
    assert lines[0].startswith("rm -rf /home/alice/.portal/tls.new && (umask 077 && mkdir -p /home/alice/.portal/tls.new")
    assert lines[1] == 'rm -rf "$(readlink -f /home/alice/.portal/tls)" /home/alice/.portal/tls && ' \
                       "mv /home/alice/.portal/tls.new /home/alice/.portal/tls"

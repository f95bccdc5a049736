"""The test server's copy of a Python 3.6: its RUNPATH is rewritten in place, never made longer."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_tasks.testing.errors import TestServerError
from portal_tasks.testing.oldpython import relocate_runpath

OLD = "/root/.pyenv/versions/3.6.15/lib"


def elf(tmp_path: Path, strings: list[str]) -> Path:
    path = tmp_path / "python3.6"
    path.write_bytes(b"\x7fELF" + b"\0junk\0" + b"\0".join(s.encode() for s in strings) + b"\0tail")
    return path


def test_the_runpath_is_replaced_and_padded_to_the_same_length(tmp_path: Path) -> None:
    path = elf(tmp_path, [OLD, "libc.so.6"])
    size = path.stat().st_size
    assert relocate_runpath(path, OLD, "$ORIGIN/../lib")
    data = path.read_bytes()
    assert path.stat().st_size == size and OLD.encode() not in data
    assert b"\0$ORIGIN/../lib\0" in data and b"\0libc.so.6\0" in data


def test_a_longer_path_or_a_non_elf_file_is_not_touched(tmp_path: Path) -> None:
    path = elf(tmp_path, [OLD])
    with pytest.raises(TestServerError, match="longer"):
        relocate_runpath(path, OLD, "$ORIGIN/" + "x" * len(OLD))
    assert OLD.encode() in path.read_bytes()
    text = tmp_path / "python3.pc"
    text.write_text(f"libdir={OLD}\n")
    assert not relocate_runpath(text, OLD, "$ORIGIN")
    assert not relocate_runpath(elf(tmp_path, [OLD + "/more"]), OLD, "$ORIGIN")  # only the whole string

"""The README's test command runs unit and e2e tests in one pytest call (rootdir imports, no packages)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_basenames() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    clashes = sorted(name for name, count in names.items() if count > 1)
    assert not clashes, f"test modules named alike under tests/ (one `pytest tests` cannot collect both): {clashes}"

"""The README shows examples/test_my_server.py as it is (the project runs that file in its tests)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_shows_the_example_server_check_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "test_my_server.py").read_text()
    assert f"```python\n{example}```\n" in readme

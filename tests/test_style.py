"""The repository keeps setup.cfg's line limit (flake8's max-line-length) in every Python file."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_line_is_within_the_configured_limit():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    limit = config.getint("flake8", "max-line-length")
    long_lines = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("cvae", "tests", "benchmarks", "examples")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > limit
    ]
    assert limit == 120 and not long_lines, long_lines

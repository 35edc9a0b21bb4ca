"""Shared by every suite: ``support`` (fakes, template loading) is importable from tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def pytest_configure(config):
    # Every secret and token the run creates must stay out of its output (support/leaks.py).
    from support import leaks

    leaks.install(config)

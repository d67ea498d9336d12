"""Planting a defect in the code under fuzz, to show a fuzzer reports it.

Compiled (tools/compile.py), the hot modules call each other's functions and their own
methods directly, not through a module or class attribute, so a replacement set with
monkeypatch would never run there. The fuzzers themselves are Python in both passes of
scripts/check, so these tests of the oracle run in the pure pass only and skip, saying why,
in the compiled one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from evs._compiled import compiled_modules


def plant(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, defect: Any) -> None:
    """Put ``defect`` in place of ``owner.name`` (``owner`` a module or a class)."""
    module = owner.__name__ if isinstance(owner, ModuleType) else owner.__module__
    if module in compiled_modules():
        pytest.skip(f"replaces {module} {name}: compiled callers do not see that")
    monkeypatch.setattr(owner, name, defect)

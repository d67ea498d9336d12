"""Layer rules of architecture.md, enforced on the source tree with an AST walk."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "evs"

#: The protocol core decides; it must not reach for I/O, clocks, randomness or logging.
CORE_BANNED = {
    "asyncio",
    "logging",
    "os",
    "random",
    "secrets",
    "select",
    "selectors",
    "socket",
    "subprocess",
    "sys",
    "threading",
    "time",
}
#: Which evs packages each layer may import (architecture.md, "Layers").
ALLOWED_EVS = {
    "totem": {"evs.types", "evs.errors", "evs.totem"},
    "check": {"evs.types", "evs.errors", "evs.trace", "evs.check"},
    "trace": {"evs.types", "evs.errors", "evs.trace"},
    "sim": {
        "evs.types",
        "evs.errors",
        "evs.totem",
        "evs.trace",
        "evs.check",
        "evs.sim",
        "evs.runtime",
        "evs.crypto",
        # Which hot modules tools/compile.py compiles (a leaf: it imports nothing of evs).
        "evs._compiled",
    },
    "runtime": {"evs.types", "evs.errors", "evs.totem", "evs.trace", "evs.runtime", "evs.crypto"},
    # node.client() hands the application the library's own Client: the one upward edge.
    "daemon": {
        "evs.types",
        "evs.errors",
        "evs.totem",
        "evs.trace",
        "evs.runtime",
        "evs.ipc",
        "evs.crypto",
        "evs.daemon",
        "evs.client",
        # The executive names its build (log, status): the same leaf as the simulator's.
        "evs._compiled",
    },
    "client": {"evs.types", "evs.errors", "evs.ipc", "evs.client"},
    "ipc": {"evs.types", "evs.errors", "evs.ipc"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def files_of(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED_EVS))
def test_layer_imports_point_down_only(package: str) -> None:
    allowed = ALLOWED_EVS[package]
    bad = []
    for path in files_of(package):
        for line, module in imports_of(path):
            ours = module == "evs" or module.startswith("evs.")
            if ours and not any(module == a or module.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not bad, "layer violation:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["totem", "runtime"])
def test_protocol_core_and_runtime_are_pure(package: str) -> None:
    """The core and the runtime glue run unchanged under the simulator: no I/O, no clock."""
    paths = files_of(package)
    assert paths, f"evs.{package} has no modules"
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in paths
        for line, module in imports_of(path)
        if module.split(".")[0] in CORE_BANNED
    ]
    assert not bad, f"evs.{package} must stay sans-I/O:\n" + "\n".join(bad)


def test_ipc_protocol_is_pure() -> None:
    """Daemon and client share evs.ipc; it does no I/O of its own (style rule 14)."""
    paths = files_of("ipc")
    assert paths, "evs.ipc has no modules"
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in paths
        for line, module in imports_of(path)
        if module.split(".")[0] in CORE_BANNED
    ]
    assert not bad, "the IPC protocol must stay sans-I/O:\n" + "\n".join(bad)


def test_import_evs_stays_light() -> None:
    """``import evs`` loads neither the client's I/O nor the protocol core."""
    code = (
        "import sys, evs; "
        "heavy = [m for m in ('asyncio', 'socket', 'threading', 'evs.client', 'evs.totem', "
        "'evs.runtime', 'evs.daemon') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "evs.Client; evs.AsyncClient; assert 'evs.totem' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    """The walker itself works: a planted socket import is found."""
    planted = tmp_path / "planted.py"
    planted.write_text("import socket\nfrom evs.sim import cluster\n", encoding="utf-8")
    assert [m for _, m in imports_of(planted)] == ["socket", "evs.sim"]

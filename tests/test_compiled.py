"""Which variant this run tests: the compiled pass of scripts/check must really be compiled.

scripts/check runs a second pass over the core's tests with the mypyc-compiled modules
(tools/compile.py) first on PYTHONPATH and EVS_EXPECT_COMPILED=1; if the extensions failed
to load, that pass would quietly test the pure-Python modules again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evs._compiled import HOT_MODULES, compiled_modules


def test_the_variant_is_the_one_expected() -> None:
    if os.environ.get("EVS_EXPECT_COMPILED") == "1":
        assert compiled_modules() == list(HOT_MODULES)
    else:
        assert compiled_modules() == [], "compiled extensions shadow the .py sources"


def test_the_compile_tool_lists_every_hot_module() -> None:
    for name in HOT_MODULES:
        path = os.path.join(os.path.dirname(__file__), "..", "src", *name.split(".")) + ".py"
        assert os.path.isfile(path), f"{name} is listed as a hot module but has no source"


SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


@pytest.mark.skipif(os.environ.get("EVS_EXPECT_COMPILED") != "1", reason="compiled pass only")
@pytest.mark.parametrize("seed", [3, 11, 29, 4242])
def test_a_compiled_simulation_is_the_pure_one_byte_for_byte(tmp_path: Path, seed: int) -> None:
    """The simulator is deterministic, so the same seed must give identical traces (every
    datagram's effect, delivery and configuration change, per processor and per handle)."""
    traces = {}
    for variant, path in (("pure", SRC), ("compiled", os.environ["PYTHONPATH"])):
        out = tmp_path / variant
        out.mkdir()
        env = {**os.environ, "PYTHONPATH": path}
        argv = [sys.executable, "-m", "evs.cli", "sim", "--seed", str(seed)]
        r = subprocess.run(
            [*argv, "--trace", str(out / "t.jsonl")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        traces[variant] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert traces["pure"], "the simulator wrote no trace"
    assert traces["compiled"] == traces["pure"]

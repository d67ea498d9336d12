"""setup.py: a plain install is pure Python; EVS_COMPILE=1 compiles exactly the hot modules.

The quick tests check the switch without compiling; the slow one (``-m slow``, about a minute
and the package index for the build requirements) installs the compiled build into a fresh
virtual environment and runs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from types import ModuleType

import pytest

from evs._compiled import HOT_MODULES

ROOT = Path(__file__).resolve().parents[1]


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evs_setup", ROOT / "setup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() is not called
    return module


def test_the_compiled_build_is_the_hot_modules_and_each_exists() -> None:
    paths = load_setup().hot_modules()
    assert len(paths) == len(HOT_MODULES)
    for name, path in zip(HOT_MODULES, paths, strict=True):
        assert path == "src/" + name.replace(".", "/") + ".py"
        assert (ROOT / path).is_file()


def test_a_plain_install_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVS_COMPILE", raising=False)
    assert load_setup().compiled_build() == {}


def test_an_editable_compiled_install_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVS_COMPILE", "1")
    monkeypatch.setattr(sys, "argv", ["setup.py", "editable_wheel"])
    with pytest.raises(SystemExit, match="regular install"):
        load_setup().compiled_build()


@pytest.mark.slow
def test_evs_compile_installs_the_compiled_build(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    tree = tmp_path / "pyevs"  # what a source distribution holds
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(tree)],
        check=True,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "EVS_COMPILE": "1"},
    )
    # The fresh venv's own package, whatever PYTHONPATH this test runs under (the compiled pass).
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import evs._compiled as c; print(len(c.compiled_modules()))"
    out = subprocess.run(
        [str(py), "-c", probe], check=True, capture_output=True, text=True, env=clean
    )
    assert int(out.stdout) == len(HOT_MODULES)
    sim = subprocess.run(
        [str(env_dir / "bin" / "evs"), "sim", "--seed", "3"],
        check=False,
        capture_output=True,
        text=True,
        env=clean,
    )
    assert sim.returncode == 0, sim.stdout[-2000:]

"""The optional compiled build at install time: ``EVS_COMPILE=1 pip install .``.

Theory of operation: everything about the package is in pyproject.toml; this file only adds
the mypyc extensions of ``evs._compiled.HOT_MODULES`` when the environment asks for them, so a
plain ``pip install`` stays pure Python and needs no compiler. With ``EVS_COMPILE=1`` setuptools
reports mypy as a build requirement (``setup_requires``; pip installs it into the isolated
build environment) and, once it is there, compiles the modules into the wheel next to their
``.py`` sources: the installed package then loads the extensions (``evs status --json`` shows
``build``). An editable install is refused with EVS_COMPILE=1: the extensions would be built into
``src`` and shadow every later edit of the sources (use ``tools/compile.py`` in a checkout).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent
#: What compiling needs in the build environment: mypy (mypyc), and the typed libraries the
#: compiled modules import (mypyc type-checks them first).
BUILD_REQUIRES = ["mypy>=1.20,<2", "cryptography>=41,<50"]


def hot_modules() -> list[str]:
    """The compiled build's modules as paths, from evs._compiled (read, not imported: the
    package's dependencies need not be installed in the build environment)."""
    source = (ROOT / "src" / "evs" / "_compiled.py").read_text(encoding="utf-8")
    names: dict[str, object] = {}
    exec(compile(source, "_compiled.py", "exec"), names)  # a constant and a function
    modules = names["HOT_MODULES"]
    assert isinstance(modules, tuple)
    return ["src/" + str(m).replace(".", "/") + ".py" for m in modules]


def compiled_build() -> dict[str, Any]:
    if os.environ.get("EVS_COMPILE") != "1":
        return {}
    if {"editable_wheel", "develop"} & set(sys.argv[1:]):  # the commands, not paths
        raise SystemExit(
            "EVS_COMPILE=1 needs a regular install (pip install .), not an editable one: the "
            "extensions would shadow every later edit of src; in a checkout use tools/compile.py"
        )
    try:
        from mypyc.build import mypycify  # noqa: PLC0415
    except ImportError:  # asking for build requirements: mypy is not there yet
        return {"setup_requires": BUILD_REQUIRES}
    return {"setup_requires": BUILD_REQUIRES, "ext_modules": mypycify(hot_modules(), opt_level="3")}


if __name__ == "__main__":  # as setuptools runs it; tests import the functions above
    setup(**compiled_build())

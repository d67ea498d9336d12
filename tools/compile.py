"""Compile pyevs's hot modules with mypyc into a copy of the source tree (optional speed-up).

Theory of operation: the protocol core, the runtime service, the IPC codec, the client
session, and the I/O path every message takes around them in the executive (its step, its UDP
transport and wire, datagram sealing, the IPC server) are plain, strictly
typed Python; mypyc turns each module into a C extension with the same behaviour and, end to
end, about a quarter more messages a second (docs/benchmarks.md). The pure-Python modules stay
the reference and the fallback: nothing requires a compiler.

The compiled modules are built into a *copy* of ``src`` (``--out DIR``, default
``build/compiled``), never next to the sources: an extension module shadows the ``.py`` of
the same name, so a stale one in ``src`` would silently run old code after an edit. Use the
copy by putting ``DIR/src`` first on ``PYTHONPATH``::

    .venv/bin/python tools/compile.py                       # -> build/compiled/src
    PYTHONPATH=build/compiled/src .venv/bin/evs bench ...   # runs the compiled core

``--check`` only says whether this machine can compile (a C compiler and the Python
headers) and exits 0 or 3, so that ``scripts/check`` can skip the compiled test pass on a
machine without them instead of failing. ``evs.compiled_modules()`` tells at run time which
modules are compiled.

A compiled module checks at run time what a library call returns wherever its type is a
primitive (bool, int, bytes, ...): a library whose stubs promise more than it does makes the
compiled build raise where the pure one went on (uvloop's ``remove_reader`` returns None where
typeshed says bool), so such calls go through ``Any``. The compiled pass of scripts/check runs
real executives (tests/integration) to catch them.

Not compiled: ``evs.totem.config`` (the daemon reads its dataclass fields by reflection), the
daemon's start-up and configuration, embedded mode and the CLI (none of them on a message's
path), and the public client classes (``evs.Client``, ``evs.AsyncClient``): compiled, a class
takes no attributes it does not declare, no weak reference and no Python subclass, which
applications may rely on (the blocking client compiled was worth 2-6 %; its session and the
IPC codec it calls are compiled).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from evs._compiled import HOT_MODULES

ROOT = Path(__file__).resolve().parents[1]

#: The modules mypyc compiles, relative to ``src``: everything on the per-message path that
#: is pure computation (the list lives in evs._compiled, which reports them at run time).
MODULES = tuple(name.replace(".", "/") + ".py" for name in HOT_MODULES)


def can_compile() -> str | None:
    """Why this machine cannot build C extensions, or None if it can."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc}) on PATH"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; Debian: apt install python3-dev)"
    try:
        import mypyc  # noqa: F401, PLC0415
    except ImportError:
        return "mypyc is not installed (it comes with mypy: pip install -e '.[dev]')"
    return None


def build(out: Path) -> None:
    """Copy ``src`` to ``out/src`` and compile MODULES there, in place."""
    tree = out / "src"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(ROOT / "src", tree, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    script = (
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='pyevs-compiled', ext_modules=mypycify({list(MODULES)!r}, opt_level='3'),"
        " script_args=['build_ext', '--inplace', '--build-temp', '../build-temp'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"compile: mypyc failed (exit {r.returncode}), see above")
    built = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.so"))
    missing = [m for m in MODULES if not any(b.startswith(m[:-3] + ".") for b in built)]
    if missing:
        raise SystemExit(f"compile: no extension was built for {', '.join(missing)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compiled")
    parser.add_argument("--check", action="store_true", help="only say whether we can compile")
    args = parser.parse_args()
    why = can_compile()
    if args.check or why:
        print(f"compile: {why}" if why else "compile: this machine can compile", file=sys.stderr)
        return 3 if why else 0
    print(f"compile: building {len(MODULES)} modules with mypyc into {args.out}/src ...")
    build(args.out.resolve())
    print(f"compile: done; use PYTHONPATH={args.out}/src")
    return 0


if __name__ == "__main__":
    sys.exit(main())

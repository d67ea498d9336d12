"""Two source trees, alternated run by run: does a change move latency or throughput?

Why: on a small shared machine one run of ``evs bench`` drifts by 30 % from the next (the
host's state changes within minutes, docs/benchmarks.md "Low-load latency on two CPUs"), so a
before/after pair of single runs proves nothing. This runs ``evs bench --netns`` from tree A,
then from tree B, ``--pairs`` times (the order flips every pair, so neither tree always runs
second), and judges B by the ratio within each pair: the geometric mean of B/A and how many
pairs went B's way. With ``--rate`` the figure is the remote p50 (lower is better), without it
the msgs/s per receiver (higher is better). Every run must verify its deliveries.

A tree is a checkout (``git worktree add /tmp/base <commit>``); its ``src`` goes first on
``PYTHONPATH`` for the whole run, executives included. Root, like ``evs bench --netns``::

    .venv/bin/python benchmarks/ab_bench.py /tmp/base . --pairs 6 --rate 500 --sizes 64
    .venv/bin/python benchmarks/ab_bench.py /tmp/base . --pairs 3 --senders both --sizes 64,1K
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

Key = tuple[str, int]  # (senders, size)


def bench(tree: Path, args: argparse.Namespace) -> dict[Key, tuple[float, bool]]:
    """One ``evs bench`` run from ``tree``: {(senders, size): (figure, verified)}."""
    cmd = [
        sys.executable, "-m", "evs.cli", "bench", "--netns", "--senders", args.senders,
        "--sizes", args.sizes, "--reps", "1", "--seconds", str(args.seconds),
        "--netmtu", str(args.netmtu), "--cipher", args.cipher, "--json",
    ]  # fmt: skip
    if args.rate:
        cmd += ["--rate", str(args.rate)]
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, check=False)
        if done.returncode not in (0, 1):  # 1: a run that did not verify, still reported
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"ab_bench: evs bench from {tree} failed: {' / '.join(tail)}")
    try:
        points = json.loads(done.stdout)["points"]
    except (ValueError, KeyError):
        raise SystemExit(f"ab_bench: evs bench from {tree} printed no figures") from None
    field = "lat_p50_remote_ms" if args.rate else "msgs_per_s"
    out: dict[Key, tuple[float, bool]] = {}
    for p in points:
        value = p[field]
        if value is None:  # no remote receiver (every node sends): the overall p50
            value = p["lat_p50_ms"]
        out[(p["senders"], p["size"])] = (float(value), bool(p["verified"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="tree A (the reference)")
    parser.add_argument("b", type=Path, help="tree B (the change)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--rate", type=int, default=0, help="msgs/s per sender: latency mode")
    parser.add_argument("--sizes", default="64")
    parser.add_argument("--senders", choices=("one", "all", "both"), default="one")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--netmtu", type=int, default=1500)
    parser.add_argument("--cipher", default="none", help="evs bench --cipher (default: none)")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    if not 1 <= args.pairs <= 50 or not 1 <= args.seconds <= 60 or not 0 <= args.rate <= 10**6:
        parser.error("--pairs must be 1..50, --seconds 1..60, --rate 0..1000000")
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for name, tree in trees.items():
        if not (tree / "src" / "evs" / "__init__.py").is_file():
            parser.error(f"tree {name} ({tree}) has no src/evs: give a checkout of pyevs")
    what = "remote p50 (ms, lower is better)" if args.rate else "msgs/s (higher is better)"
    print(f"ab_bench: A={trees['A']}  B={trees['B']}  {args.pairs} pairs, {what}", flush=True)
    runs: list[dict[str, Any]] = []
    figures: dict[Key, dict[str, list[float]]] = {}
    failed = False
    for i in range(args.pairs):
        for name in "AB" if i % 2 == 0 else "BA":
            got = bench(trees[name], args)
            line = []
            for key, (value, verified) in sorted(got.items()):
                figures.setdefault(key, {"A": [], "B": []})[name].append(value)
                failed |= not verified
                line.append(f"{key[0]}/{key[1]} {value:g}{'' if verified else ' NOT VERIFIED'}")
            runs.append(
                {
                    "pair": i + 1,
                    "tree": name,
                    "figures": {f"{k[0]}/{k[1]}": v for k, v in got.items()},
                }
            )
            print(f"  pair {i + 1} {name}: " + ", ".join(line), flush=True)
    print("B against A, per pair:")
    summary = {}
    for key, ab in sorted(figures.items()):
        ratios = [b / a for a, b in zip(ab["A"], ab["B"], strict=True) if a > 0]
        mean = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else float("nan")
        better = sum((r < 1.0) if args.rate else (r > 1.0) for r in ratios)
        summary[f"{key[0]}/{key[1]}"] = {"ratios": ratios, "geomean": mean, "b_better": better}
        print(
            f"  {key[0]}/{key[1]}: ratios {' '.join(f'{r:.2f}' for r in ratios)}; "
            f"geometric mean {mean:.3f}; B better in {better} of {len(ratios)}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args)
                    | {"a": str(trees["A"]), "b": str(trees["B"]), "json": str(args.json)},
                    "runs": runs,
                    "summary": summary,
                },
                indent=1,
            )
        )
    if failed:
        print("ab_bench: some runs did not verify their deliveries", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""tools/bench_chart.py: a chart drawn from small hand-made inputs is well-formed SVG whose bars,
values, ratios and labels are those of the inputs; bad inputs are clear errors.

The tool runs as a subprocess, as it is used (``python tools/bench_chart.py ...``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_chart.py"
SVG = "{http://www.w3.org/2000/svg}"


def bench_report(loss: int, points: list[tuple[str, int, float, bool]]) -> dict[str, Any]:
    """The parts of an ``evs bench --json`` object the chart reads."""
    return {
        "tool": "evs bench",
        "parameters": {"nodes": 3, "loss_permille": loss, "shape": None},
        "points": [
            {"senders": m, "size": s, "msgs_per_s": v, "MB_per_s": v * s / 1e6, "verified": ok}
            for m, s, v, ok in points
        ],
    }


def corosync_row(tag: str, senders: int, size: int, rate: float, rep: int) -> str:
    """One line of the corosync lab's results.jsonl (the fields the chart reads, and more)."""
    return json.dumps(
        {
            "kind": "tput",
            "tag": tag,
            "nodes": 3,
            "size": size,
            "senders": senders,
            "rep": rep,
            "rx_msg_s_median": rate,
            "rx_MB_s_median": rate * size / 1e6,
            "same_total_order": True,
            "fifo_err": 0,
            "per_node": [],
        }
    )


def run_tool(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_inputs(tmp: Path) -> tuple[Path, Path, Path]:
    lossless = tmp / "lossless.json"
    lossless.write_text(
        json.dumps(
            bench_report(
                0,
                [
                    ("one", 1024, 16000.0, True),
                    ("one", 65536, 800.0, True),
                    ("all", 1024, 20000.0, True),
                    ("all", 65536, 780.0, True),
                ],
            )
        )
    )
    lossy = tmp / "loss10.json"
    lossy.write_text(json.dumps(bench_report(10, [("one", 1024, 4000.0, False)])))
    rows = [
        corosync_row("knet", 1, 1024, 31000.0, 0),
        corosync_row("knet", 1, 1024, 33000.0, 1),  # median of the two reps: 32000
        corosync_row("knet", 1, 65536, 800.0, 0),
        corosync_row("knet", 3, 1024, 20000.0, 0),
        corosync_row("knet", 3, 65536, 400.0, 0),
        corosync_row("knet", 1, 64, 90000.0, 0),  # a size pyevs did not measure: not drawn
        corosync_row("knet-loss", 1, 1024, 8000.0, 0),
        json.dumps({"kind": "lat", "tag": "knet", "nodes": 3, "size": 1024}),
    ]
    coro = tmp / "results.jsonl"
    coro.write_text("\n".join(rows) + "\n")
    return lossless, lossy, coro


def test_chart_from_fixture_inputs(tmp_path: Path) -> None:
    lossless, lossy, coro = write_inputs(tmp_path)
    out = tmp_path / "chart.svg"
    r = run_tool(
        *("-o", out, "--label", "pyevs lossless", lossless, "--corosync", coro),
        *("--tag", "knet", lossy, "--tag", "knet-loss"),  # inputs and options intermixed
    )
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()  # well-formed, or this raises
    assert root.tag == f"{SVG}svg"
    bars = {
        (b.get("data-series"), b.get("data-mode"), int(b.get("data-size", "0"))): float(
            b.get("data-value", "nan")
        )
        for b in root.iter(f"{SVG}rect")
        if b.get("class") == "bar"
    }
    assert bars == {
        ("pyevs lossless", "one", 1024): 16000.0,
        ("pyevs lossless", "one", 65536): 800.0,
        ("pyevs lossless", "all", 1024): 20000.0,
        ("pyevs lossless", "all", 65536): 780.0,
        ("pyevs, 1 % loss", "one", 1024): 4000.0,  # named after its run's --loss
        ("corosync knet", "one", 1024): 32000.0,
        ("corosync knet", "one", 65536): 800.0,
        ("corosync knet", "all", 1024): 20000.0,
        ("corosync knet", "all", 65536): 400.0,
        ("corosync knet-loss", "one", 1024): 8000.0,
    }
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    ratios = sorted(t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "ratio")
    # first pyevs series against the first corosync series, the second against the second
    assert ratios == sorted(["0.50x", "1.00x", "1.00x", "1.95x", "0.50x"])
    for label in ("one sender", "every node sending", "1 KiB", "64 KiB", "16k", "unverified"):
        assert label in texts, label
    assert "64 B" not in texts
    assert any(t.startswith("pyevs lossless (ratios: to corosync knet)") for t in texts)
    assert any(t.startswith("pyevs, 1 % loss (ratios: to corosync knet-loss)") for t in texts)


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    lossless, _, coro = write_inputs(tmp_path)
    out = tmp_path / "chart.svg"
    r = run_tool("-o", out, lossless, "--corosync", coro, "--tag", "udpu")
    assert r.returncode == 2
    assert "no throughput rows tagged 'udpu' for 3 nodes (tags there: knet, knet-loss)" in r.stderr
    r = run_tool("-o", out, coro)
    assert r.returncode == 2
    assert "not JSON" in r.stderr
    r = run_tool("-o", out, tmp_path / "missing.json")
    assert r.returncode == 2
    assert "cannot read it" in r.stderr
    r = run_tool("-o", out, lossless, "--tag", "knet")
    assert r.returncode == 2
    assert "--tag needs --corosync" in r.stderr
    for r in (run_tool("-o", out, coro), run_tool("-o", out, lossless, "--tag", "knet")):
        assert "Traceback" not in r.stderr
    assert not out.exists()

"""Draw ``evs bench --json`` results beside corosync's as an SVG bar chart (standard library only).

Theory of operation: each pyevs input is the JSON object ``evs bench --json`` prints; its
``points`` (median over repetitions of each sender mode and size) make one *series*, named by
``--label`` or after the run's network conditions ("pyevs, 1 % loss"); inputs with the same
name are merged (the median of a point given twice). Corosync figures come from the JSON lines
the corosync lab's ``bench.py tput`` appends (``kind: "tput"``, ``tag``, ``nodes``, ``size``,
``senders``: 1 or the node count, ``rx_msg_s_median``, ``rx_MB_s_median``): every ``--tag``
named is one series, the median over its repetitions, for the pyevs runs' node count.

The chart is a grid of small panels, one row per sender mode (one sender, all senders) and one
column per message size that pyevs measured, each with its own scale (msgs/s differ a
thousandfold between 64 B and 64 KiB), one bar per series. Above a pyevs bar stands its value
and its ratio to a corosync series: the corosync series at the same position (first pyevs
series with the first ``--tag``, second with the second, ...), or the first one when there are
fewer. A point that did not verify is marked "unverified". Nothing is fitted or smoothed: each
bar is a number from the inputs.

    tools/bench_chart.py --out chart.svg pyevs.json --corosync results.jsonl --tag knet/...
    tools/bench_chart.py --out loss.svg --label lossless a.json --label "1 % loss" b.json \\
        --corosync results.jsonl --tag lossless --tag loss-10 --metric MBps

Exit status 0, or 2 with a message when an input cannot be read or names nothing to draw.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["Series", "corosync_series", "main", "pyevs_series", "render"]

MODES = ("one", "all")
MODE_TITLES = {"one": "one sender", "all": "every node sending"}
METRICS = {"msgs": ("msgs_per_s", "msgs/s per receiver"), "MBps": ("MB_per_s", "MB/s per receiver")}
#: Bar colours: pyevs series in blues, corosync series in oranges (then they repeat).
PYEVS_COLOURS = ("#1f5fa8", "#5b9bd5", "#9cc3e6", "#2e4a6b")
COROSYNC_COLOURS = ("#d9731a", "#f0a35e", "#f6c99a", "#8a4a10")
PANEL_H = 220
BAR_W = 34
GAP = 10


class ChartError(Exception):
    """An input cannot be read or gives nothing to draw (exit 2)."""


@dataclass
class Series:
    """One bar per (sender mode, size): a value and whether every run of it verified."""

    name: str
    system: str  # "pyevs" or "corosync"
    values: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    verified: dict[tuple[str, int], bool] = field(default_factory=dict)

    def add(self, key: tuple[str, int], value: float, verified: bool) -> None:
        self.values.setdefault(key, []).append(value)
        self.verified[key] = self.verified.get(key, True) and verified

    def value(self, key: tuple[str, int]) -> float | None:
        vs = self.values.get(key)
        return statistics.median(vs) if vs else None


def size_label(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % 1024 == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ChartError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ChartError(f"{path}: not JSON ({exc})") from None


def default_name(report: dict[str, Any]) -> str:
    """ "pyevs", with the network's conditions when the run had any."""
    p = report.get("parameters", {})
    said = []
    if p.get("loss_permille"):
        said.append(f"{p['loss_permille'] / 10:g} % loss")
    if p.get("shape"):
        said.append(f"{p['shape']} cap")
    return "pyevs" + (f", {', '.join(said)}" if said else "")


def pyevs_series(
    paths: Sequence[Path], labels: Sequence[str | None], metric: str
) -> tuple[list[Series], int]:
    """The pyevs series of ``paths`` (``labels[i]`` or the default name) and their node count."""
    key_name = METRICS[metric][0]
    out: dict[str, Series] = {}
    nodes: set[int] = set()
    for path, label in zip(paths, labels, strict=True):
        report = _load_json(path)
        if not isinstance(report, dict) or report.get("tool") != "evs bench":
            raise ChartError(f"{path}: not the JSON output of evs bench --json")
        try:
            nodes.add(int(report["parameters"]["nodes"]))
            name = label or default_name(report)
            s = out.setdefault(name, Series(name, "pyevs"))
            for pt in report["points"]:
                s.add((pt["senders"], int(pt["size"])), float(pt[key_name]), bool(pt["verified"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ChartError(f"{path}: a field is missing or malformed ({exc!r})") from None
    if len(nodes) > 1:
        raise ChartError(f"the evs bench inputs ran different node counts: {sorted(nodes)}")
    return list(out.values()), nodes.pop() if nodes else 0


def corosync_series(path: Path, tags: Sequence[str], nodes: int, metric: str) -> list[Series]:
    """One series per tag from the corosync lab's results (JSON lines), for ``nodes`` nodes."""
    field_name = "rx_msg_s_median" if metric == "msgs" else "rx_MB_s_median"
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise ChartError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ChartError(f"{path}:{k}: not a JSON line ({exc})") from None
        if isinstance(row, dict) and row.get("kind") == "tput" and row.get("nodes") == nodes:
            rows.append(row)
    have = sorted({str(r["tag"]) for r in rows})
    out = []
    for tag in tags:
        if tag not in have:
            raise ChartError(
                f"{path}: no throughput rows tagged {tag!r} for {nodes} nodes "
                f"(tags there: {', '.join(have) or 'none'})"
            )
        s = Series(f"corosync {tag}", "corosync")
        for r in rows:
            if r["tag"] != tag:
                continue
            try:
                mode = "one" if int(r["senders"]) == 1 else "all"
                ok = bool(r.get("same_total_order", True)) and not r.get("fifo_err", 0)
                s.add((mode, int(r["size"])), float(r[field_name]), ok)
            except (KeyError, TypeError, ValueError) as exc:
                raise ChartError(f"{path}: a {tag!r} row is malformed ({exc!r})") from None
        out.append(s)
    return out


def _fmt(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"


def _text(x: float, y: float, s: str, size: int = 11, anchor: str = "middle", **kw: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in kw.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(s)}</text>"
    )


def render(series: Sequence[Series], *, metric: str, title: str, notes: Sequence[str]) -> str:
    """The SVG document of the chart (see the module docstring)."""
    if not series:
        raise ChartError("nothing to draw: no series")
    pyevs = [s for s in series if s.system == "pyevs"]
    coro = [s for s in series if s.system == "corosync"]
    # The points pyevs measured (corosync's other sizes would be bars without a partner).
    keys = {k for s in (pyevs or series) for k in s.values}
    modes = [m for m in MODES if any(k[0] == m for k in keys)]
    sizes = sorted({k[1] for k in keys})
    if not modes:
        raise ChartError("nothing to draw: the inputs have no points")

    def reference(s: Series) -> Series | None:
        if not coro:
            return None
        i = pyevs.index(s)
        return coro[i] if i < len(coro) else coro[0]

    panel_w = GAP * 2 + len(series) * (BAR_W + 4)
    left, top, legend_h = 70, 60, 22 * len(series) + 10
    width = max(560, left + len(sizes) * (panel_w + 16) + 20)
    height = top + len(modes) * (PANEL_H + 60) + legend_h + 18 * len(notes) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 24, title, 15, font_weight="bold"),
        _text(width / 2, 42, f"{METRICS[metric][1]}; each panel has its own scale", 11),
    ]
    for row, mode in enumerate(modes):
        y0 = top + row * (PANEL_H + 60) + 20
        out.append(_text(10, y0 - 6, MODE_TITLES[mode], 13, anchor="start", font_weight="bold"))
        for col, size in enumerate(sizes):
            x0 = left + col * (panel_w + 16)
            key = (mode, size)
            vals = [s.value(key) for s in series]
            top_v = max((v for v in vals if v is not None), default=0.0) or 1.0
            base = y0 + PANEL_H
            out.append(
                f'<rect class="panel" x="{x0}" y="{y0}" width="{panel_w}" height="{PANEL_H}" '
                'fill="#f7f7f7" stroke="#cccccc"/>'
            )
            out.append(_text(x0 + panel_w / 2, base + 16, size_label(size), 12))
            np_, nc = 0, 0
            for k, (s, v) in enumerate(zip(series, vals, strict=True)):
                bx = x0 + GAP + k * (BAR_W + 4)
                if s.system == "pyevs":
                    colour = PYEVS_COLOURS[np_ % len(PYEVS_COLOURS)]
                    np_ += 1
                else:
                    colour = COROSYNC_COLOURS[nc % len(COROSYNC_COLOURS)]
                    nc += 1
                if v is None:
                    out.append(_text(bx + BAR_W / 2, base - 4, "n/a", 9, fill="#888888"))
                    continue
                h = (PANEL_H - 48) * v / top_v
                label = f"{s.name}, {MODE_TITLES[mode]}, {size_label(size)}: {v:g}"
                out.append(
                    f'<rect class="bar" data-series="{escape(s.name)}" data-mode="{mode}" '
                    f'data-size="{size}" data-value="{v:g}" x="{bx:.1f}" y="{base - h:.1f}" '
                    f'width="{BAR_W}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{escape(label)}</title></rect>"
                )
                out.append(_text(bx + BAR_W / 2, base - h - 4, _fmt(v), 10))
                ref = reference(s) if s.system == "pyevs" else None
                rv = ref.value(key) if ref is not None else None
                if ref is not None and rv:
                    out.append(
                        _text(
                            bx + BAR_W / 2,
                            base - h - 16,
                            f"{v / rv:.2f}x",
                            10,
                            font_weight="bold",
                            **{"class": "ratio"},
                        )
                    )
                if not s.verified.get(key, True):
                    out.append(_text(bx + BAR_W / 2, base - 4, "unverified", 8, fill="#b00000"))
    ly = top + len(modes) * (PANEL_H + 60) + 6
    np_, nc = 0, 0
    for k, s in enumerate(series):
        if s.system == "pyevs":
            colour = PYEVS_COLOURS[np_ % len(PYEVS_COLOURS)]
            np_ += 1
            ref = reference(s)
            extra = f" (ratios: to {ref.name})" if ref is not None else ""
        else:
            colour = COROSYNC_COLOURS[nc % len(COROSYNC_COLOURS)]
            nc += 1
            extra = ""
        y = ly + 22 * k
        out.append(f'<rect x="{left}" y="{y}" width="14" height="14" fill="{colour}"/>')
        out.append(_text(left + 20, y + 11, s.name + extra, 12, anchor="start"))
    for k, note in enumerate(notes):
        out.append(_text(10, ly + legend_h + 18 * k + 4, note, 10, anchor="start", fill="#555555"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_chart.py",
        description="An SVG bar chart of evs bench --json outputs beside corosync lab results.",
    )
    p.add_argument("--out", "-o", required=True, help="the SVG file to write")
    p.add_argument(
        "inputs",
        nargs="*",
        default=[],
        help="evs bench --json outputs (each a series, or merged into one by --label)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        help="a series name; the first --label names the first input, and so on (inputs "
        "given the same name are merged; the rest are named after their runs)",
    )
    p.add_argument("--corosync", type=Path, help="the corosync lab's results.jsonl")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        help="a corosync series: the rows of this tag (repeat for more; needs --corosync)",
    )
    p.add_argument("--metric", choices=tuple(METRICS), default="msgs", help="msgs/s or MB/s")
    p.add_argument("--title", default=None, help="the chart's title")
    return p.parse_intermixed_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if not args.inputs:
            raise ChartError("give at least one evs bench --json output")
        if len(args.label) > len(args.inputs):
            raise ChartError("more --label than inputs")
        if args.tag and args.corosync is None:
            raise ChartError("--tag needs --corosync FILE")
        labels = list(args.label) + [None] * (len(args.inputs) - len(args.label))
        series, nodes = pyevs_series([Path(p) for p in args.inputs], labels, args.metric)
        if args.corosync is not None:
            tags = args.tag or []
            if not tags:
                raise ChartError("--corosync needs at least one --tag (its series)")
            series += corosync_series(args.corosync, tags, nodes, args.metric)
        notes = [f"inputs: {', '.join(Path(p).name for p in args.inputs)}"]
        if args.corosync is not None:
            notes.append(f"corosync: {args.corosync.name}, tags {', '.join(args.tag)}")
        title = args.title or f"pyevs beside corosync, {nodes} nodes"
        svg = render(series, metric=args.metric, title=title, notes=notes)
    except ChartError as exc:
        print(f"bench_chart: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

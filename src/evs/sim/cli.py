"""``evs sim``: run the simulator for one seed or a campaign of seeds, and judge the trace."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from evs.sim.campaign import SeedOutcome, replay_command, run_campaign
from evs.sim.canaries import CANARIES
from evs.sim.cluster import ACCOUNTING, Cluster, SimResult
from evs.sim.options import draw_options, parse_span

__all__ = ["add_parser", "run", "slot_trace_path"]


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _nodes(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 384:
        raise argparse.ArgumentTypeError(f"must be 1..384, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _handles(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"must be 1..16, got {text}")
    return value


def _span(text: str) -> tuple[float, float]:
    try:
        return parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="run the deterministic simulator and check the EVS properties",
        description=(
            "Simulate a cluster under loss, duplication, reordering and faults, then check "
            "every EVS property on the trace. Every option not given is drawn from the seed. "
            "Exit status 1 on any violation, with the command that replays it."
        ),
    )
    p.add_argument("--seed", type=int, help="the seed (default: a random one, printed)")
    p.add_argument("--seeds", type=int, default=1, help="campaign: run this many seeds from --seed")
    p.add_argument("--jobs", type=int, default=0, help="campaign worker processes (0: all cores)")
    p.add_argument("--nodes", type=_nodes, help="number of processors")
    p.add_argument("--duration-ms", type=_positive, help="length of the fault/load phase")
    p.add_argument("--duration", type=_positive, help="the same, in seconds")
    p.add_argument("--loss", type=_probability, help="packet loss probability per receiver")
    p.add_argument("--dup", type=_probability, help="duplication probability")
    p.add_argument("--reorder", type=_probability, help="probability of an extra random delay")
    p.add_argument("--bandwidth", type=_positive, help="per-processor egress limit, Mbit/s")
    p.add_argument("--rate", type=_positive, help="messages per second per processor")
    p.add_argument("--safe-fraction", type=_probability, help="share of SAFE messages")
    p.add_argument("--token", type=_positive, help="token timeout in ms (default 1000)")
    p.add_argument("--window-size", type=_count, help="packets one token rotation may carry")
    p.add_argument("--max-messages", type=_count, help="packets one processor sends per visit")
    p.add_argument("--sort-queue-slots", type=_count, help="how far (seqs) the ring may run ahead")
    p.add_argument(
        "--queue-bytes-max", type=_count, help="send queue bytes per processor before TryAgain"
    )
    p.add_argument(
        "--queue-messages-max",
        type=_count,
        help="send queue messages per processor before TryAgain (default: no bound)",
    )
    p.add_argument("--max-message-size", type=_count, help="largest application message, bytes")
    p.add_argument(
        "--saturate",
        type=_span,
        nargs="?",
        const=(0.0, math.inf),
        metavar="FROM:TO",
        help="keep every send queue full (the whole safety phase, or FROM:TO ms)",
    )
    p.add_argument(
        "--handles",
        type=_handles,
        help="application handles per process, each with its own handle trace (drawn 1-3)",
    )
    p.add_argument("--static-ring", action="store_true", help="no membership: a fixed ring")
    p.add_argument("--no-faults", action="store_true", help="no crashes, partitions or pauses")
    p.add_argument("--light", action="store_true", help="cap the drawn workload (campaigns)")
    p.add_argument("--canary", choices=CANARIES, help="inject a known bug the checker must catch")
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write the processors' JSON-lines trace here, and handle slot k's trace to "
        "FILE.slot<k>.jsonl (check those with evs check --handle-traces)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print protocol notices")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.duration_ms or (args.duration * 1000.0 if args.duration else None)
    return {
        "nodes": args.nodes,
        "duration_ms": duration,
        "loss": args.loss,
        "dup": args.dup,
        "reorder": args.reorder,
        "bandwidth_mbps": args.bandwidth,
        "rate": args.rate,
        "safe_fraction": args.safe_fraction,
        "token_ms": args.token,
        "window_size": args.window_size,
        "max_messages": args.max_messages,
        "sort_queue_slots": args.sort_queue_slots,
        "queue_bytes_max": args.queue_bytes_max,
        "queue_messages_max": args.queue_messages_max,
        "max_message_size": args.max_message_size,
        "saturate": args.saturate,
        "handles": args.handles,
        "static_ring": True if args.static_ring else None,
        "canary": args.canary,
    }


def run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    overrides = {k: v for k, v in _overrides(args).items() if v is not None}
    with_faults = not (args.no_faults or args.static_ring)
    if args.seeds > 1:
        return _campaign(seed, args, overrides, with_faults)
    print(f"evs sim: seed={seed}", flush=True)
    options = draw_options(seed, with_faults=with_faults, light=args.light, **overrides)
    print(options.describe(), flush=True)
    cluster = Cluster(options)
    result = cluster.run()
    if args.trace:
        _write_trace(args.trace, cluster.trace)
        for k, events in enumerate(cluster.handle_traces):
            _write_trace(slot_trace_path(args.trace, k), events)
    stats = result.stats
    if args.verbose:
        for line in cluster.notices:
            print("  " + line)
    if args.json:
        print(
            json.dumps(
                {
                    "seed": seed,
                    "ok": result.ok,
                    "violations": result.violations,
                    "sim_ms": result.sim_ms,
                    "real_s": result.real_s,
                    "converged_ms": result.converged_ms,
                    "liveness_bound_ms": result.liveness_bound_ms,
                    "stats": dict(stats),
                }
            )
        )
    else:
        _print_summary(cluster, result)
    if result.violations:
        print(f"VIOLATIONS ({len(result.violations)}):")
        for v in result.violations[:50]:
            print("  " + v)
        print("replay: " + replay_command(seed, overrides, with_faults, args.light, options))
        return 1
    print("result: OK, no violation")
    return 0


def slot_trace_path(path: str, slot: int) -> str:
    """Where ``--trace FILE`` writes handle slot ``slot``'s trace."""
    return f"{path}.slot{slot}.jsonl"


def _write_trace(path: str, events: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")


def _print_summary(cluster: Cluster, result: SimResult) -> None:
    sim_ms, real_s, conv = result.sim_ms, result.real_s, result.converged_ms
    s = cluster.final_stats()
    speed = sim_ms / 1000.0 / real_s if real_s else 0.0
    print(f"simulated {sim_ms / 1000:.2f} s in {real_s:.2f} s real ({speed:.1f}x)")
    print(
        f"messages: {s['messages submitted']} submitted, {s['sends traced']} sent, "
        f"{s['deliveries']} deliveries; {s['submit try again']} TryAgain"
    )
    print(
        f"service: {cluster.options.handles} handle slot(s) per process, "
        f"{s['deliveries to handles']} deliveries to handles, "
        f"{s['handle trace events']} handle trace events"
    )
    print(
        f"network: {s['datagrams sent']} datagrams, {s['datagrams lost']} lost, "
        f"{s['datagrams dropped at a full send buffer']} dropped at a full send buffer; "
        f"{s['mcast retransmitted']} retransmissions, {s['token retransmitted']} token "
        f"retransmits, {s['token lost']} token losses"
    )
    print(
        f"membership: {s['regular configurations']} regular and "
        f"{s['transitional configurations']} transitional configurations delivered, "
        f"{s['rings installed']} rings"
    )
    print(
        "happened: "
        + ", ".join(
            f"{s[k]} {k}"
            for k in ACCOUNTING[: ACCOUNTING.index("datagrams lost to slow receivers") + 1]
        )
    )
    opts = cluster.options
    print(
        f"flow: token fcc peak {s['token fcc peak']} of window {opts.window_size}, "
        f"sort queue peak {s['sort queue peak']} of {opts.sort_queue_slots} slots; "
        f"saturation: {s['saturated submits']} submits, {s['saturation try again']} TryAgain, "
        f"{s['room again']} room again"
    )
    _print_timeline(cluster)
    if conv is not None:
        print(f"liveness: one ring of all live processors {conv:.0f} ms after the faults ended")
    print(
        f"liveness bound: {result.liveness_bound_ms:.0f} ms "
        f"({cluster.options.liveness_ms:.0f} + 2 x {cluster.drain_ms:.0f} ms drain estimate)"
    )
    print("final: " + cluster.describe_states())


def _print_timeline(cluster: Cluster, limit: int = 12) -> None:
    """The regular configurations, in the order they first appeared, and who installed each."""
    first: dict[str, tuple[float, list[int], list[int]]] = {}
    faults = []
    for e in cluster.trace:
        if e["ev"] in ("crash", "restart"):
            faults.append(f"{e['t']:.0f}ms {e['ev']} {e['node']}")
        if e["ev"] != "confchg" or e["kind"] != "regular":
            continue
        seen = first.setdefault(e["ring"], (e["t"], e["members"], []))
        seen[2].append(e["node"])
    print(f"configurations ({len(first)} regular rings):")
    for ring, (t, members, installed) in list(first.items())[:limit]:
        absent = sorted(set(members) - set(installed))
        note = f" (not installed by {absent})" if absent else ""
        print(f"  {t:8.1f} ms  ring {ring:<8} members {members}{note}")
    if len(first) > limit:
        print(f"  ... and {len(first) - limit} more")
    if faults:
        print("crashes and restarts: " + ", ".join(faults[:20]))


def _campaign(
    first: int, args: argparse.Namespace, overrides: dict[str, Any], with_faults: bool
) -> int:
    seeds = range(first, first + args.seeds)
    print(
        f"evs sim: campaign of {args.seeds} seeds from {first} "
        f"({'faults' if with_faults else 'no faults'}; {overrides or 'all drawn'})",
        flush=True,
    )
    step = max(1, args.seeds // 20)

    def progress(outcome: SeedOutcome, done: int, total: int) -> None:
        if outcome.violations:
            print(f"  seed {outcome.seed}: {len(outcome.violations)} violation(s)", flush=True)
        if done % step == 0 or done == total:
            print(f"  {done}/{total} seeds", flush=True)

    result = run_campaign(
        seeds,
        overrides,
        with_faults=with_faults,
        light=args.light,
        jobs=args.jobs,
        progress=progress,
    )
    sim_s = sum(o.sim_ms for o in result.outcomes) / 1000
    print(
        f"{len(result.outcomes)} seeds, {len(result.failures)} failing; "
        f"{sim_s:.0f} s simulated in {result.real_s:.0f} s real; "
        f"{sum(o.deliveries for o in result.outcomes)} deliveries checked"
    )
    totals = result.totals()
    print(
        "happened: " + ", ".join(f"{totals[k]} {k}" for k in ACCOUNTING if not k.endswith(" peak"))
    )
    print(
        f"flow: {sum(o.options.saturating for o in result.outcomes)} seeds saturated, "
        f"{sum(o.window_filled for o in result.outcomes)} filled a window, "
        f"{sum(o.sort_queue_filled for o in result.outcomes)} filled a sort queue"
    )
    unproven = result.unproven()
    for line in unproven:
        print(f"NOT PROVEN: {line}")
    for o in result.failures:
        print(f"FAIL seed {o.seed}: {o.violations[0][:300]}")
        print("  replay: " + replay_command(o.seed, overrides, with_faults, args.light, o.options))
    return 1 if result.failures or unproven else 0

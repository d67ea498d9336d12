"""What random loss costs a saturated simulated ring: throughput and token-loss recovery time.

Every processor keeps its send queue full (``Cluster.set_saturating``); every datagram to every
receiver is lost with probability ``--loss`` (tokens, data and retransmissions alike, drawn
from this benchmark's own random stream). Reported per loss rate, over ``--seconds`` of
simulated time after a warm-up:

* data packets stamped per simulated second (retransmissions excluded) and messages delivered
  per second per processor, and their ratio to the lossless run of the same ring;
* token-loss recovery: for every token datagram lost on its way to a processor, the time from
  the loss until a copy of that token (same ``token_seq``, or a later one) reached it;
* token retransmissions, duplicate tokens discarded, multicast retransmissions;
* membership changes (``--membership``: the ring is formed by the membership protocol, so a
  token that stays lost past the ``token`` timeout would show as a new configuration).

The figures are simulated time: they depend on the protocol and the network model (one-way
delay 0.05 ms + Exp(0.2 ms) by default), not on this machine's speed.

    .venv/bin/python benchmarks/token_loss.py [--nodes 3 5] [--loss 0 0.01 0.05] [--membership]
    .venv/bin/python benchmarks/token_loss.py --classic   # the fixed token_retransmit only
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

from evs.sim.cluster import Cluster
from evs.sim.options import SimOptions
from evs.totem.codec import cluster_id_for, decode, peek_type
from evs.totem.events import MembState
from evs.totem.messages import MessageType, OrfToken

_TOKEN = MessageType.ORF_TOKEN


@dataclasses.dataclass
class Result:
    packets_per_s: float
    delivered_per_s: float
    recoveries_ms: list[float]
    stats: dict[str, int]
    real_s: float


def run(
    nodes: int, loss: float, seconds: float, *, membership: bool, classic: bool, seed: int
) -> Result:
    options = SimOptions(
        seed=seed,
        nodes=nodes,
        static_ring=not membership,
        duration_ms=seconds * 1000.0,
        rate=1.0,
        safe_fraction=0.0,
        large_fraction=0.0,
        queue_bytes_max=1 << 20,
    )
    config = options.totem_config()
    if classic:
        fields = {f.name for f in dataclasses.fields(config)}
        if "token_retransmit_min" in fields:
            config = dataclasses.replace(config, token_retransmit_min=config.token_retransmit_ms)
    cluster = Cluster(options, config=config)
    token_type = _TOKEN
    cid = cluster_id_for(config.cluster_name)
    rng = random.Random(seed * 7919 + int(loss * 1e6))
    lost: dict[tuple[int, int], float] = {}  # (receiver, token_seq) -> first loss time
    arrivals: dict[int, list[tuple[float, int]]] = {n: [] for n in cluster.all_ids}
    measuring = [False]

    def lose(src: int, dst: int, data: bytes) -> bool:
        if not measuring[0] or rng.random() >= loss:
            return False
        if peek_type(data) is token_type:
            tok = decode(data, cid)
            assert isinstance(tok, OrfToken)
            lost.setdefault((dst, tok.token_seq), cluster.now)
        return True

    cluster.filters.append(lose)
    arrive = cluster._arrive  # a probe on the simulator's arrivals

    def probe_arrive(dst: int, data: bytes) -> None:
        if measuring[0] and peek_type(data) is token_type:
            tok = decode(data, cid)
            if isinstance(tok, OrfToken):
                arrivals[dst].append((cluster.now, tok.token_seq))
        arrive(dst, data)

    cluster._arrive = probe_arrive  # type: ignore[method-assign]
    for n in cluster.all_ids:
        cluster.start_node(n)
    warmup = 300.0 if membership else 200.0
    if membership:
        cluster.run_until(warmup, lambda: _one_ring(cluster))
    cluster.load_on = True
    cluster.set_saturating(True)
    cluster.run_until(cluster.now + 100.0)
    measuring[0] = True
    before = cluster.final_stats()
    started = time.perf_counter()
    t0 = cluster.now
    cluster.run_until(t0 + seconds * 1000.0)
    real = time.perf_counter() - started
    measuring[0] = False
    after = cluster.final_stats()
    span_s = seconds
    recoveries = []
    for (dst, token_seq), at in lost.items():
        back = next((t for t, s in arrivals[dst] if t >= at and s >= token_seq), None)
        if back is not None:
            recoveries.append(back - at)
    keys = (
        "token retransmitted",
        "token duplicate",
        "mcast retransmitted",
        "retransmit requested",
        "rings installed",
        "token lost",
    )
    stats = {k: after[k] - before[k] for k in keys}
    stats["gathers"] = sum(v for k, v in after.items() if k.startswith("gather: ")) - sum(
        v for k, v in before.items() if k.startswith("gather: ")
    )
    stats["violations"] = len(cluster.violations)
    return Result(
        packets_per_s=(after["mcast sent"] - before["mcast sent"]) / span_s,
        delivered_per_s=(after["deliveries"] - before["deliveries"]) / nodes / span_s,
        recoveries_ms=recoveries,
        stats=stats,
        real_s=real,
    )


def _one_ring(cluster: Cluster) -> bool:
    procs = [n.proc for n in cluster.nodes.values()]
    return all(
        p is not None and p.state is MembState.OPERATIONAL and len(p.memb_list) == len(procs)
        for p in procs
    )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 0.01, 0.05])
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--membership", action="store_true", help="form the ring by membership")
    parser.add_argument(
        "--classic", action="store_true", help="fixed token_retransmit (no adaptive timeout)"
    )
    args = parser.parse_args()
    for n in args.nodes:
        base = None
        for loss in args.loss:
            r = run(
                n,
                loss,
                args.seconds,
                membership=args.membership,
                classic=args.classic,
                seed=args.seed,
            )
            if base is None:
                base = r.packets_per_s or 1.0
            rec = r.recoveries_ms
            recovery = (
                f"token losses {len(rec):4d}, recovery p50 {_pct(rec, 0.5):6.2f} ms "
                f"p90 {_pct(rec, 0.9):6.2f} max {max(rec, default=0.0):6.1f} "
                f"mean {statistics.fmean(rec) if rec else 0.0:6.2f}"
            )
            s = r.stats
            print(
                f"N={n} loss={loss:.2f}: {r.packets_per_s / 1000:6.1f}k pkt/s "
                f"({r.packets_per_s / base:4.0%}), {r.delivered_per_s / 1000:6.1f}k msg/s per "
                f"processor; {recovery}; token resent {s['token retransmitted']}, duplicates "
                f"{s['token duplicate']}, mcast resent {s['mcast retransmitted']}, gathers "
                f"{s['gathers']}, violations {s['violations']} ({r.real_s:.0f} s real)",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""The EVS checker's entry points: every property of protocol.md section 9 over a trace.

Theory of operation. Events are grouped by node, each node keeping its own order (file order;
several files are read in the order given). One replay per node (``history.py``) builds the
epochs and judges the one-log properties; then each property group runs once over that
history: basic delivery and self-delivery (``delivery.py``), transitional agreement
(``membership.py``), per configuration the total order and causal order (``order.py``,
``causal.py``), failure atomicity and safe delivery (``agreement.py``). Each is linear or
near-linear in the number of events, so the simulator can afford to check every run.

The checker knows the trace format and nothing of the protocol's internals, so it judges a
real cluster's traces as well as the simulator's. What a trace cannot show is not judged:
a node without a log, a node whose log ends inside a configuration (unless ``quiet_end``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from evs.check.agreement import check_failure_atomicity, check_safe_delivery
from evs.check.causal import check_causal_order
from evs.check.delivery import check_basic_delivery, check_quiet_end, check_self_delivery
from evs.check.history import build_history
from evs.check.membership import check_transitional_agreement
from evs.check.order import ConfigOrder, order_configuration
from evs.check.report import Report, Violation
from evs.trace.reader import TraceError, iter_events, read_trace, validate_event

__all__ = ["check_events", "check_files"]

Event = dict[str, Any]


def _group(events: Iterable[Event], validate: bool) -> tuple[dict[int, list[Event]], int]:
    by_node: dict[int, list[Event]] = {}
    n = 0
    for n, ev in enumerate(events, 1):
        if validate:
            try:
                validate_event(ev)
            except TraceError as exc:
                raise TraceError(exc.reason, source="<events>", line=n) from None
        log = by_node.get(ev["node"])
        if log is None:
            by_node[ev["node"]] = log = []
        log.append(ev)
    return by_node, n


def _judge(
    by_node: dict[int, list[Event]],
    n_events: int,
    *,
    quiet_end: bool,
    handle_traces: bool,
    compare_time: bool,
) -> Report:
    out: list[Violation] = []
    h = build_history(by_node, out, handle_traces=handle_traces)
    n_messages = check_basic_delivery(h, out, compare_time=compare_time)
    check_self_delivery(h, out, quiet_end=quiet_end)
    groups = h.transitional_groups()
    check_transitional_agreement(h, groups, out)
    orders: dict[str, ConfigOrder] = {}
    for ring, epochs in h.by_ring.items():
        order = order_configuration(ring, epochs, out, handle_traces=handle_traces)
        orders[ring] = order
        check_causal_order(ring, epochs, order, h.sends, out, handle_traces=handle_traces)
    check_failure_atomicity(groups, out, handle_traces=handle_traces)
    check_safe_delivery(h, groups, orders, out, quiet_end=quiet_end, handle_traces=handle_traces)
    if quiet_end:
        check_quiet_end(h, orders, out, handle_traces=handle_traces)
    return Report(
        out,
        events=n_events,
        messages=n_messages,
        nodes=len(by_node),
        configurations=len(h.by_ring) + len(groups),
    )


def check_events(
    events: Iterable[Event],
    *,
    quiet_end: bool = False,
    handle_traces: bool = False,
    compare_time: bool = True,
    validate: bool = True,
) -> Report:
    """Check in-memory trace events (all nodes interleaved, or one node after another).

    ``quiet_end``: the run ended on a quiet, connected network, so liveness (1.4) is judged
    and every node still in a configuration at the end owes what it would owe after it.
    ``handle_traces``: the events come from application handles, whose first configuration
    may be joined mid-stream (api.md section 4). ``compare_time``: ``t`` values of different
    nodes share one clock (the simulator); pass False for daemons on separate machines.
    ``validate``: check each event's schema first (raises TraceError); producers that build
    events with ``evs.trace``'s builders may skip it.
    """
    by_node, n = _group(events, validate)
    return _judge(
        by_node, n, quiet_end=quiet_end, handle_traces=handle_traces, compare_time=compare_time
    )


def _read(path: str | os.PathLike[str]) -> Iterator[Event]:
    if os.fspath(path) == "-":
        return iter_events(sys.stdin, source="<stdin>")
    return read_trace(path)


def check_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    quiet_end: bool = False,
    handle_traces: bool = False,
    compare_time: bool = True,
) -> Report:
    """Check trace files (one per node, or several nodes per file; "-" is standard input).

    Raises TraceError for a malformed line and OSError for an unreadable file.
    """
    events = chain.from_iterable(_read(p) for p in paths)
    by_node, n = _group(events, validate=False)
    return _judge(
        by_node, n, quiet_end=quiet_end, handle_traces=handle_traces, compare_time=compare_time
    )

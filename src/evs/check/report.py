"""Violation records and the checker's report, for people (text) and programs (JSON).

Theory of operation: every property function appends ``Violation`` values to one list; the
report orders them by property id, counts what was judged, and renders. A violation carries
the offending events themselves, so a reader can grep the trace for them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROPERTIES", "Report", "Violation", "violation"]

#: Property id (protocol.md section 9) -> short name.
PROPERTIES: dict[str, str] = {
    "1.1": "delivered after its one send",
    "1.2": "no duplicate or altered delivery",
    "1.3": "delivered in the configuration it was sent in",
    "1.4": "quiet end: every member delivers",
    "2.1": "self-inclusion",
    "2.2": "one configuration id, one membership",
    "2.3": "regular/transitional alternation",
    "2.4": "same transitional, same neighbours",
    "2.5": "ring seq increases",
    "2.6": "event tagged with the installed configuration",
    "3": "self-delivery",
    "4": "failure atomicity",
    "5": "causal order",
    "6.1": "one total order",
    "6.2": "no gaps in a regular configuration",
    "6.3": "transitional gaps only before members' messages",
    "6.4": "same sequence before the same transitional",
    "7.1": "safe delivery in a regular configuration",
    "7.2": "safe delivery in a transitional configuration",
}


def _sort_key(prop: str) -> tuple[int, ...]:
    return tuple(int(part) for part in prop.split("."))


def _compact(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken property: its id, short name, what happened, and the events that show it."""

    property: str
    name: str
    message: str
    events: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "property": self.property,
            "name": self.name,
            "message": self.message,
            "events": list(self.events),
        }

    def __str__(self) -> str:
        return f"{self.property} ({self.name}): {self.message}"


def violation(prop: str, message: str, *events: dict[str, Any] | None) -> Violation:
    """A Violation of property ``prop``; ``None`` events are dropped (unknown witnesses)."""
    return Violation(prop, PROPERTIES[prop], message, tuple(e for e in events if e is not None))


@dataclass(slots=True)
class Report:
    """The outcome of one check: violations (ordered by property id) and what was judged."""

    violations: list[Violation] = field(default_factory=list)
    events: int = 0
    messages: int = 0
    nodes: int = 0
    configurations: int = 0

    def __post_init__(self) -> None:
        self.violations.sort(key=lambda v: _sort_key(v.property))

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def counts(self) -> dict[str, int]:
        return {
            "events": self.events,
            "messages": self.messages,
            "nodes": self.nodes,
            "configurations": self.configurations,
        }

    def by_property(self) -> dict[str, int]:
        """How many violations each property has, in property order."""
        return dict(
            sorted(
                Counter(v.property for v in self.violations).items(),
                key=lambda kv: _sort_key(kv[0]),
            )
        )

    def summary(self) -> str:
        judged = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if self.ok:
            return f"{judged}: all properties hold"
        per = ", ".join(f"{prop}: {n}" for prop, n in self.by_property().items())
        return f"{judged}: {len(self.violations)} violation(s) ({per})"

    def render_text(self, limit: int | None = None) -> str:
        """The summary, then each violation with its events; at most ``limit`` violations."""
        lines = [self.summary()]
        shown = self.violations if limit is None else self.violations[:limit]
        for v in shown:
            lines.append(str(v))
            lines.extend(f"    {_compact(e)}" for e in v.events)
        hidden = len(self.violations) - len(shown)
        if hidden > 0:
            lines.append(f"... and {hidden} more violation(s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "by_property": self.by_property(),
            "violations": [v.to_dict() for v in self.violations],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def __str__(self) -> str:
        return self.render_text()

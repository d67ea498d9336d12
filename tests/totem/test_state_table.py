"""The documented state diagram is the one the code enforces (style rule 4)."""

from __future__ import annotations

from pathlib import Path

from evs.totem.events import MembState
from evs.totem.processor import TRANSITIONS

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"


def diagram() -> str:
    order = list(MembState)
    lines = ["stateDiagram-v2"]
    for source in order:
        for target in sorted(TRANSITIONS[source], key=order.index):
            lines.append(f"    {source.name} --> {target.name}")
    return "\n".join(lines)


def test_the_diagram_in_the_docs_is_generated_from_the_transition_table() -> None:
    text = DOC.read_text()
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    documented = "\n".join(line.strip() for line in block.strip().splitlines())
    generated = "\n".join(line.strip() for line in diagram().splitlines())
    assert documented == generated, f"docs/protocol.md must show:\n{diagram()}"


def test_every_state_can_reach_gather_and_only_recovery_reaches_operational() -> None:
    assert all(MembState.GATHER in targets for targets in TRANSITIONS.values())
    assert [s for s, t in TRANSITIONS.items() if MembState.OPERATIONAL in t] == [MembState.RECOVERY]

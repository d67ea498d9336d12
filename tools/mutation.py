"""Mutation run over the protocol core (``src/evs/totem``): a curated list of semantic mutants.

Theory of operation. Each mutant is one edit a developer could plausibly make to the core
(an off-by-one, a forgotten call, the wrong bound of a rule), named with the protocol rule it
breaks. For each mutant the runner copies the worktree's ``src`` to a temporary directory
(the real files are never edited), replaces the snippet (which must occur exactly once) and
runs the test command with ``PYTHONPATH`` pointing at the copy. It first checks that the copy
is what ``import evs.totem`` loads, so a stray installed copy cannot make every mutant
"survive". The test command, in stages that stop at the first failure:

1. ``pytest -x -q -p no:cacheprovider`` over the unit, scenario, canary and regression tests;
2. ``evs sim --seed 1 --seeds 40 --jobs 1`` (fault seeds, full workload);
3. ``evs sim --seed 1 --seeds 40 --static-ring --jobs 1``.

A campaign is stopped at its first failing seed (its progress line names it). One deadline
covers all stages: a mutant still running then is "timeout", reported apart from "killed".
Results are merged into a JSON file (so ``--only`` re-runs update it) and printed as a
Markdown table. Run one mutant at a time: the stages are single-process by design.

    .venv/bin/python tools/mutation.py --list
    .venv/bin/python tools/mutation.py --baseline
    .venv/bin/python tools/mutation.py [--only ID ...] [--timeout 480]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = "src/evs/totem"
BIN = Path(sys.executable).parent

PYTEST_PATHS = (
    "tests/totem",
    "tests/scenarios",
    "tests/sim/test_canary.py",
    "tests/sim/test_regressions.py",
)
CAMPAIGNS: tuple[tuple[str, ...], ...] = (
    ("--seed", "1", "--seeds", "40", "--jobs", "1"),
    ("--seed", "1", "--seeds", "40", "--static-ring", "--jobs", "1"),
)


@dataclass(frozen=True)
class Mutant:
    """One semantic edit of a core file: ``old`` must occur exactly once in it."""

    id: str
    file: str
    old: str
    new: str
    rule: str


@dataclass
class Outcome:
    """What one run of the test command said about one mutant (or the baseline)."""

    id: str
    result: str  # killed | survived | timeout | error
    detail: str
    seconds: float


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------ ordering.py
    M(
        "ord-window-plus-one",
        "ordering.py",
        "seq > self.last_released + window or",
        "seq > self.last_released + window + 1 or",
        "the sort queue holds at most sort_queue_slots packets above last_released",
    ),
    M(
        "ord-store-no-aru",
        "ordering.py",
        "        if seq == self.my_aru + 1:\n            self.update_aru()\n        return True",
        "        return True",
        "the aru advances when the packet just above it arrives",
    ),
    M(
        "ord-release-off-by-one",
        "ordering.py",
        "for seq in range(self.last_released + 1, upto + 1):",
        "for seq in range(self.last_released + 1, upto):",
        "freeing up to a mark frees the packet at the mark too",
    ),
    M(
        "ord-rtr-skip-first-hole",
        "ordering.py",
        "for seq in range(self.my_aru + 1, limit + 1):",
        "for seq in range(self.my_aru + 2, limit + 1):",
        "retransmission requests start at the first hole, my_aru + 1",
    ),
    M(
        "ord-rtr-skip-last",
        "ordering.py",
        "limit = min(tok_seq, self.last_released + window)",
        "limit = min(tok_seq - 1, self.last_released + window)",
        "a missing packet at the token's seq is requested too",
    ),
    M(
        "ord-recovery-frees-plain",
        "ordering.py",
        "if held is None or held[0].inner is None:",
        "if held is None:",
        "in RECOVERY only re-sent (wrapped) packets are freed, never plain new-ring ones",
    ),
    # ------------------------------------------------------------ processor.py
    M(
        "proc-send-no-aru",
        "processor.py",
        '        if sent:\n            ring.update_aru()\n            self.stats["mcast sent"]',
        '        if sent:\n            self.stats["mcast sent"]',
        "a sender's aru covers the packets it just stamped",
    ),
    M(
        "proc-release-one-visit",
        "processor.py",
        "ring.release(min(tok.aru, ring.my_last_aru, ring.my_high_delivered))",
        "ring.release(min(tok.aru, ring.my_high_delivered))",
        "free only what the token's aru showed on two successive visits",
    ),
    M(
        "proc-release-undelivered",
        "processor.py",
        "ring.release(min(tok.aru, ring.my_last_aru, ring.my_high_delivered))",
        "ring.release(min(tok.aru, ring.my_last_aru))",
        "never free a packet this processor has not delivered yet",
    ),
    M(
        "proc-safe-one-visit",
        "processor.py",
        "return min(ring.my_aru, ring.my_last_aru, ring.my_prev_aru)",
        "return min(ring.my_aru, ring.my_last_aru)",
        "safe delivery needs the token's aru on two successive visits (my_prev_aru)",
    ),
    M(
        "proc-safe-bound-off-by-one",
        "processor.py",
        "if msg.guarantee is _SAFE and seq > safe_bound:",
        "if msg.guarantee is _SAFE and seq >= safe_bound:",
        "a safe message at the safe bound itself is deliverable",
    ),
    M(
        "proc-token-dup-equal",
        "processor.py",
        "if tok.token_seq <= ring.my_token_seq:",
        "if tok.token_seq < ring.my_token_seq:",
        "a token whose hop counter was already seen is a duplicate",
    ),
    M(
        "proc-token-seq-below-held",
        "processor.py",
        "if tok.seq < ring.my_high_seq_received or tok.aru > tok.seq:",
        "if tok.aru > tok.seq:",
        "a token whose seq is below packets held would reuse sequence numbers",
    ),
    M(
        "proc-aru-not-raised",
        "processor.py",
        "if ring.my_aru < tok.aru or tok.aru_addr in (self.nodeid, 0):",
        "if ring.my_aru < tok.aru or tok.aru_addr == self.nodeid:",
        "when nobody holds the token's aru down (aru_addr 0) the next member raises it",
    ),
    M(
        "proc-aru-addr-never-zero",
        "processor.py",
        "tok.aru_addr = 0 if tok.aru == tok.seq else self.nodeid",
        "tok.aru_addr = self.nodeid",
        "aru_addr is cleared when the aru reaches the token's seq (nobody is behind)",
    ),
    M(
        "proc-fcc-accumulates",
        "processor.py",
        "tok.fcc = min(_U32_MAX, max(0, tok.fcc + sent - ring.my_trc))",
        "tok.fcc = min(_U32_MAX, max(0, tok.fcc + sent))",
        "fcc counts one rotation: a member replaces its previous contribution",
    ),
    M(
        "proc-sort-window-flow",
        "processor.py",
        "if ring.last_released + cfg.sort_queue_slots - allowed - cfg.window_size < tok.seq:",
        "if ring.last_released + cfg.sort_queue_slots - allowed < tok.seq:",
        "stamp nothing that could fall outside a lagging member's sort window",
    ),
    # ------------------------------------------------------------ membership.py
    M(
        "memb-consensus-counts-failed",
        "membership.py",
        "return all(node in self.consensus for node in self.proc - self.failed)",
        "return all(node in self.consensus for node in self.proc)",
        "consensus is over proc - failed, not over failed processors too",
    ),
    M(
        "memb-rep-highest",
        "membership.py",
        "elif m.candidates() and m.candidates()[0] == p.nodeid:",
        "elif m.candidates() and m.candidates()[-1] == p.nodeid:",
        "the lowest candidate creates the commit token",
    ),
    M(
        "memb-ring-seq-own-only",
        "membership.py",
        "ring_id = RingId(seq=max(p.token_ring_id_seq, p.ring_id.seq) + 4, rep=p.nodeid)",
        "ring_id = RingId(seq=p.ring_id.seq + 4, rep=p.nodeid)",
        "a new ring is numbered above every ring seq seen (token_ring_id_seq)",
    ),
    M(
        "memb-ring-seq-step-one",
        "membership.py",
        "ring_id = RingId(seq=max(p.token_ring_id_seq, p.ring_id.seq) + 4, rep=p.nodeid)",
        "ring_id = RingId(seq=max(p.token_ring_id_seq, p.ring_id.seq) + 1, rep=p.nodeid)",
        "ring seq step +4",
    ),
    M(
        "memb-no-counter-fail",
        "membership.py",
        "    if p.nodeid in failed and not join.leave:\n        m.failed.add(sender)\n"
        "    elif sender in _old_members(p):",
        "    if sender in _old_members(p):",
        "a processor that lists me as failed is failed by me (the sets stay symmetric)",
    ),
    M(
        "memb-adopt-failed-from-anyone",
        "membership.py",
        "    elif sender in _old_members(p):\n        m.failed |= failed - {p.nodeid}",
        "    else:\n        m.failed |= failed - {p.nodeid}",
        "failed sets are adopted only from members of our old ring",
    ),
    M(
        "memb-keep-failed-after-abandon",
        "membership.py",
        "        m.failed = set()\n    if p.state is not MembState.GATHER:",
        "        pass\n    if p.state is not MembState.GATHER:",
        "an abandoned COMMIT/RECOVERY starts the next round with an empty failed set",
    ),
    M(
        "memb-join-stale-equal",
        "membership.py",
        "if join.sender in p.memb_list and join.ring_seq < p.ring_id.seq:",
        "if join.sender in p.memb_list and join.ring_seq <= p.ring_id.seq:",
        "a member's JOIN naming our current ring is news (it left the ring), not stale",
    ),
    M(
        "memb-forget-past-rings",
        "membership.py",
        "    m.remember_ring(token.ring_id)\n",
        "",
        "late packets of a ring we belonged to are stale, not a foreign partition",
    ),
    M(
        "memb-commit-any-membership",
        "membership.py",
        "            and list(token.addrs) == m.candidates()\n",
        "",
        "a commit token is taken in GATHER only for the membership we agreed on",
    ),
    M(
        "memb-commit-old-ring-seq",
        "membership.py",
        "and p.ring_id.seq < token.ring_id.seq <= p.token_ring_id_seq + RING_SEQ_LEAP",
        "and token.ring_id.seq <= p.token_ring_id_seq + RING_SEQ_LEAP",
        "a commit token is taken only for a ring numbered above the one we are on",
    ),
    # ------------------------------------------------------------ recovery.py
    M(
        "rec-trans-any-old-ring",
        "recovery.py",
        "if n in members and entries[n].old_ring_id == old.ring_id)",
        "if n in members)",
        "the transitional set is the new members that come from OUR old ring",
    ),
    M(
        "rec-low-max",
        "recovery.py",
        "low = min(entries[n].aru for n in trans)",
        "low = max(entries[n].aru for n in trans)",
        "re-send everything above the LOWEST aru of the transitional members",
    ),
    M(
        "rec-designated-lowest-id",
        "recovery.py",
        "return min(n for aru, n in by_aru if aru >= seq) == me",
        "return min(n for _, n in by_aru) == me",
        "the designated re-sender of a seq is a member whose aru shows it holds it",
    ),
    M(
        "rec-above-top-nobody",
        "recovery.py",
        "        if seq > top:\n            return True",
        "        if seq > top:\n            return False",
        "above every aru, every holder re-sends (nobody is known to hold it)",
    ),
    M(
        "rec-resend-drops-last",
        "recovery.py",
        "if low < seq <= old.high_seq_received and msg.inner is None",
        "if low < seq < old.high_seq_received and msg.inner is None",
        "re-send up to and including high_seq_received",
    ),
    M(
        "rec-gap-all-senders",
        "recovery.py",
        "            if not gap or msg.system_from in deliver_memb:\n"
        "                in_transitional.append(msg)",
        "            in_transitional.append(msg)",
        "after a gap only transitional members' messages are delivered",
    ),
    M(
        "rec-gap-forgotten",
        "recovery.py",
        "gap = gap or s != expect",
        "gap = s != expect",
        "once a gap is seen, every later message is after the gap",
    ),
    M(
        "rec-safe-not-held-back",
        "recovery.py",
        "        if msg.guarantee is Guarantee.SAFE and seq > plan.high_ring_delivered:\n"
        "            break\n",
        "",
        "a safe message goes in the old regular configuration only if someone delivered it",
    ),
    M(
        "rec-high-delivered-min",
        "recovery.py",
        "high_ring_delivered=max(entries[n].high_delivered for n in trans)",
        "high_ring_delivered=min(entries[n].high_delivered for n in trans)",
        "the safe bound at install is the HIGHEST seq a transitional member delivered",
    ),
    M(
        "rec-transitional-first",
        "recovery.py",
        "    for msg in plan.regular:\n"
        "        p.deliver_packet(msg, ring_id=old.ring_id, transitional=False)\n"
        "    if plan.transitional is not None:\n"
        "        p.events.append(plan.transitional)\n",
        "    if plan.transitional is not None:\n"
        "        p.events.append(plan.transitional)\n"
        "    for msg in plan.regular:\n"
        "        p.deliver_packet(msg, ring_id=old.ring_id, transitional=False)\n",
        "install order: old regular deliveries before the transitional configuration",
    ),
    M(
        "rec-rotation-one",
        "recovery.py",
        "if rec.rotation_counter == 2:",
        "if rec.rotation_counter == 1:",
        "install after two rotations showing install_seq received by all",
    ),
    M(
        "rec-install-seq-early",
        "recovery.py",
        "if rec.retrans_flg_count == 2:",
        "if rec.retrans_flg_count == 1:",
        "install_seq is taken after a whole rotation with retrans_flg clear",
    ),
    M(
        "rec-anyone-clears-flag",
        "recovery.py",
        "elif tok.retrans_flg and rec.my_set_retrans_flg:",
        "elif tok.retrans_flg:",
        "only the member that set retrans_flg clears it",
    ),
    M(
        "rec-no-unpacker-reset",
        "recovery.py",
        "    p.unpacker.reset()\n",
        "",
        "reassembly is reset at each regular configuration change",
    ),
    M(
        "rec-no-restart-partial",
        "recovery.py",
        "    p.packer.restart_partial()\n",
        "",
        "a message cut by the change is re-sent whole on the new ring",
    ),
    M(
        "rec-install-free-off-by-one",
        "recovery.py",
        "for s in [s for s in ring.rq if s <= rec.install_seq]:",
        "for s in [s for s in ring.rq if s < rec.install_seq]:",
        "install frees every recovery packet up to install_seq",
    ),
    M(
        "rec-refreeze-old-ring",
        "recovery.py",
        "    if rec.old is None:\n        rec.old = p.ring.freeze",
        "    if True:\n        rec.old = p.ring.freeze",
        "the old ring is saved once per change; a failed attempt keeps the snapshot",
    ),
    # ------------------------------------------------------------ groups.py
    M(
        "grp-fragment-id-zero",
        "groups.py",
        "self._next_fragment = fragment % 255 + 1",
        "self._next_fragment = (fragment + 1) % 256",
        "fragment ids run 1..255 and skip 0 (0 means complete)",
    ),
    M(
        "grp-restart-keeps-continues",
        "groups.py",
        "        self._head_offset = 0\n        self._continues = 0\n",
        "        self._head_offset = 0\n",
        "the first packet of a new ring continues nothing",
    ),
    M(
        "grp-reassembly-limit",
        "groups.py",
        "if len(buffer) + length > self._limit:",
        "if len(buffer) + length >= self._limit:",
        "a reassembly of exactly the largest legal size is accepted",
    ),
    # ------------------------------------------------------------ codec.py
    M(
        "codec-rtr-bound",
        "codec.py",
        "    if count > MAX_RTR:\n        raise DecodeError(DropReason.TOO_MANY_RTR",
        "    if count >= MAX_RTR:\n        raise DecodeError(DropReason.TOO_MANY_RTR",
        "a token may carry exactly MAX_RTR retransmission requests",
    ),
    M(
        "codec-commit-index-bound",
        "codec.py",
        "if count == 0 or memb_index > count:",
        "if count == 0 or memb_index >= count:",
        "a complete commit token has memb_index == count",
    ),
    M(
        "codec-trailing-accepted",
        "codec.py",
        "    if n != need:\n        if n < need:",
        "    if n < need:\n        if n < need:",
        "a fixed-size message with trailing bytes is dropped (canonical decoding)",
    ),
)


def mutant_by_id() -> dict[str, Mutant]:
    return {m.id: m for m in MUTANTS}


def apply(mutant: Mutant, src: Path) -> None:
    """Edit the copy of the core under ``src`` (never the worktree's own files)."""
    path = src / "evs" / "totem" / mutant.file
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"{mutant.id}: snippet occurs {count} times in {mutant.file}")
    mutated = text.replace(mutant.old, mutant.new)
    compile(mutated, str(path), "exec")
    path.write_text(mutated, encoding="utf-8")


def _copy_src(dest: Path) -> Path:
    src = dest / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def _kill(proc: subprocess.Popen[str]) -> None:
    """End a stage this runner started (its own process group) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stage(
    cmd: list[str], env: dict[str, str], deadline: float, stop: re.Pattern[str] | None
) -> tuple[str, str]:
    """Run one stage; ("pass" | "fail" | "timeout", detail). ``stop`` ends it early."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return "timeout", ""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # The watchdog ends the stage at the deadline even if it prints nothing more.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(remaining, expire)
        watchdog.start()
        early = ""
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                found = stop.search(line) if stop else None
                if found:
                    early = found.group(0).strip()
                    break
        finally:
            watchdog.cancel()
            _kill(proc)
        code = proc.returncode
        log.seek(0)
        output = log.read()
    if early:
        return "fail", early
    if expired.is_set():
        return "timeout", ""
    if code == 0:
        return "pass", ""
    # "FAILED tests/x.py::test_y[param with spaces] - AssertionError: ..."
    failed = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", output, re.MULTILINE)
    if failed:
        return "fail", failed.group(1)
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return "fail", (lines[-1] if lines else f"exit status {code}")[:160]


def run_one(mutant: Mutant | None, timeout: float, pytest_args: tuple[str, ...] = ()) -> Outcome:
    """Apply ``mutant`` (None: the unmutated baseline) to a copy and run every stage."""
    name = mutant.id if mutant else "baseline"
    started = time.monotonic()
    deadline = started + timeout
    with tempfile.TemporaryDirectory(prefix="evs-mutant-") as tmp:
        src = _copy_src(Path(tmp))
        if mutant is not None:
            apply(mutant, src)
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
        probe = subprocess.run(
            [sys.executable, "-c", "import evs.totem; print(evs.totem.__file__)"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        imported = probe.stdout.strip()
        if not imported.startswith(str(src)):
            return Outcome(name, "error", f"imports {imported}, not the mutated copy", 0.0)
        stages: list[tuple[str, list[str], re.Pattern[str] | None]] = [
            (
                "pytest",
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-x",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *pytest_args,
                    *PYTEST_PATHS,
                ],
                None,
            )
        ]
        for args in CAMPAIGNS:
            label = "sim static" if "--static-ring" in args else "sim faults"
            stages.append(
                (label, [str(BIN / "evs"), "sim", *args], re.compile(r"seed \d+: \d+ violation"))
            )
        for label, cmd, stop in stages:
            status, detail = _stage(cmd, env, deadline, stop)
            took = time.monotonic() - started
            if status == "timeout":
                return Outcome(name, "timeout", f"{label} still running at {timeout:.0f} s", took)
            if status == "fail":
                return Outcome(name, "killed", f"{label}: {detail}", took)
    return Outcome(name, "survived", "", time.monotonic() - started)


def load(path: Path) -> dict[str, Outcome]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: Outcome(**v) for k, v in raw.items()}


def save(path: Path, results: dict[str, Outcome]) -> None:
    data = {k: asdict(v) for k, v in results.items()}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def table(results: dict[str, Outcome]) -> str:
    """The Markdown table of every mutant in list order, with the score under it."""
    rows = ["| id | file | rule broken | result | first failure |", "|---|---|---|---|---|"]
    for m in MUTANTS:
        o = results.get(m.id)
        result, detail = (o.result, o.detail) if o else ("not run", "")
        detail = detail.replace("|", "\\|")
        rows.append(f"| `{m.id}` | {m.file} | {m.rule} | {result} | {detail} |")
    ran = [results[m.id] for m in MUTANTS if m.id in results]
    killed = sum(o.result == "killed" for o in ran)
    timeouts = sum(o.result == "timeout" for o in ran)
    rows.append("")
    rows.append(
        f"{killed} killed, {timeouts} killed (timeout), "
        f"{sum(o.result == 'survived' for o in ran)} survived of {len(ran)} run "
        f"({len(MUTANTS)} mutants)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", action="append", metavar="ID", help="run this mutant (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and check each applies")
    ap.add_argument("--baseline", action="store_true", help="run the unmutated code only")
    ap.add_argument("--timeout", type=float, default=480.0, help="seconds per mutant (all stages)")
    ap.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra pytest argument, e.g. --pytest-arg=--deselect=NODEID (repeatable)",
    )
    ap.add_argument("--results", type=Path, default=ROOT / "mutation-results.json")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)

    by_id = mutant_by_id()
    if len(by_id) != len(MUTANTS):
        raise SystemExit("duplicate mutant ids")
    if args.list:
        with tempfile.TemporaryDirectory(prefix="evs-mutant-") as tmp:
            for m in MUTANTS:
                src = _copy_src(Path(tmp) / m.id)
                apply(m, src)
                print(f"{m.id:32} {m.file:14} {m.rule}")
        print(f"{len(MUTANTS)} mutants, each snippet found exactly once")
        return 0
    if args.baseline:
        out = run_one(None, args.timeout, tuple(args.pytest_arg))
        print(f"baseline: {out.result} in {out.seconds:.0f} s {out.detail}")
        return 0 if out.result == "survived" else 1
    unknown = [i for i in args.only or [] if i not in by_id]
    if unknown:
        raise SystemExit(f"unknown mutant ids: {unknown}")
    chosen = [by_id[i] for i in args.only] if args.only else list(MUTANTS)
    results = load(args.results)
    for n, m in enumerate(chosen, 1):
        print(f"[{n}/{len(chosen)}] {m.id}: {m.rule}", flush=True)
        out = run_one(m, args.timeout, tuple(args.pytest_arg))
        results[m.id] = out
        save(args.results, results)
        print(f"    {out.result} in {out.seconds:.0f} s  {out.detail}", flush=True)
    text = table(results)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

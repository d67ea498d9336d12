"""A network lab on one machine: a namespace per node, veth links to a bridge, nftables faults.

Theory of operation: ``NetLab(n)`` creates a bridge namespace and one namespace per node, each
with a veth pair whose far end is enslaved to the bridge (no STP, no forwarding delay, no
multicast snooping, so IP multicast floods like on a plain switch), an address 10.N.0.i/24
and a multicast route on its link. Each veth end carries one datagram per packet
(``gso_max_segs 1``), as a wire does: a run sent with UDP segmentation is cut into its
datagrams before it leaves the node, so faults, shaping and taps act on datagrams. Nothing is
routed outside the lab. Faults are nftables tables in a node's namespace, on its *input*
hook, so they act per receiver even for multicast: ``partition`` drops UDP from the nodes
outside the receiver's side, ``loss`` drops a random share of UDP (optionally only that to one
port) and counts what it dropped (``loss_dropped``), ``input_rules`` installs a caller's own
rules. ``shape`` caps a node's link
at a rate in both directions with a token bucket filter (tc ``tbf``) on each end of its veth
pair, the node's and the bridge's, like a full-duplex switch port; ``shape_counters`` reads
what those filters sent, delayed and dropped. ``exec_prefix(i)`` is the command prefix that
runs a program inside node ``i`` (``ip netns exec`` execs it, so the pid is the program's).
Unix sockets live in the file system, not in a network namespace, so clients outside the lab
reach the executives' IPC sockets directly. ``close()`` deletes every namespace it made (also
at interpreter exit). A lab whose process was killed outright never closes: each lab records
its owner (pid and start time) in ``OWNER_DIR``, and every new lab first removes the
namespaces, and kills the processes in them, of any recorded owner that is gone
(``reap_stale_labs``), so a killed run's executives do not load the next measurement.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["OWNER_DIR", "LabError", "NetLab", "lab_available", "reap_stale_labs"]

#: One ``<prefix>.owner`` file per live lab: "<pid> <start time>" of the process that made it.
OWNER_DIR = Path("/run/evs-lab")


class LabError(RuntimeError):
    """The lab could not be built (not root, or ip/nft missing)."""


def lab_available(tools: Iterable[str] = ("ip", "nft")) -> str | None:
    """None when a lab can be built here (with ``tools``), else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in tools:
        if shutil.which(tool) is None:
            package = "nftables" if tool == "nft" else "iproute2"
            return f"'{tool}' is not installed (apt install {package})"
    return None


def _run(args: Sequence[str], stdin: str | None = None) -> str:
    r = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def _json(args: Sequence[str]) -> Any:
    out = _run(args)
    try:
        return json.loads(out)
    except ValueError:
        raise LabError(f"{' '.join(args)}: not JSON: {out[:200]!r}") from None


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (tells a reused pid apart), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def _ip_out(args: list[str]) -> str:
    """What an ``ip`` command printed; empty if it failed."""
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout


def reap_stale_labs() -> list[str]:
    """Delete the namespaces of labs whose owner process is gone, killing what runs in them;
    returns the namespaces removed. Labs without an owner file (older ones) are left alone."""
    try:
        owners = sorted(OWNER_DIR.glob("*.owner"))
    except OSError:
        return []
    removed: list[str] = []
    listed: list[str] | None = None
    for path in owners:
        try:
            pid, start = path.read_text().split()
            alive = _start_time(int(pid)) == start
        except (OSError, ValueError):
            continue  # being written, or not ours to judge
        if alive:
            continue
        prefix = path.name.removesuffix(".owner") + "-"
        if listed is None:
            out = _ip_out(["ip", "netns", "list"])
            listed = [line.split()[0] for line in out.splitlines() if line.strip()]
        for ns in listed:
            if not ns.startswith(prefix):
                continue
            for p in _ip_out(["ip", "netns", "pids", ns]).split():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(p), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            removed.append(ns)
        path.unlink(missing_ok=True)
    return removed


class NetLab:
    """``n`` nodes on one bridge, each in its own network namespace."""

    def __init__(self, n: int, *, net: int | None = None, prefix: str | None = None) -> None:
        why = lab_available()
        if why:
            raise LabError(why)
        self.n = n
        tag = os.getpid() % 100_000
        self.prefix = prefix or f"evs{tag}"
        self.net = net if net is not None else 100 + tag % 100
        self._made: list[str] = []
        reap_stale_labs()
        self._owner: Path | None = OWNER_DIR / f"{self.prefix}.owner"
        try:
            OWNER_DIR.mkdir(parents=True, exist_ok=True)
            self._owner.write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        except OSError:
            self._owner = None  # no record: only this process's close() cleans up
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    @property
    def bridge_ns(self) -> str:
        """The namespace of the bridge: every frame between the nodes passes its ports."""
        return f"{self.prefix}-br"

    def addr(self, i: int) -> str:
        return f"10.{self.net}.0.{i}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def _build(self) -> None:
        br = self.bridge_ns
        _run(["ip", "netns", "add", br])
        self._made.append(br)
        _run(["ip", "-n", br, "link", "set", "lo", "up"])
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        _run(
            [
                *("ip", "-n", br, "link", "set", "br0", "type", "bridge"),
                *("mcast_snooping", "0", "stp_state", "0", "forward_delay", "0"),
            ]
        )
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            _run(["ip", "netns", "add", ns])
            self._made.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(
                [
                    *("ip", "link", "add", f"e{i}", "netns", ns, "type", "veth"),
                    *("peer", "name", f"v{i}", "netns", br),
                ]
            )
            # Like a wire, not like a pipe between containers: a veth passes a segmented UDP
            # send (UDP_SEGMENT) through whole, so the loss rules, the shaper and a tap would
            # see one packet for a whole run of datagrams. One segment per packet makes the
            # kernel cut runs into datagrams before they leave the node.
            _run(["ip", "-n", ns, "link", "set", f"e{i}", "gso_max_segs", "1"])
            _run(["ip", "-n", br, "link", "set", f"v{i}", "gso_max_segs", "1"])
            _run(["ip", "-n", br, "link", "set", f"v{i}", "master", "br0"])
            _run(["ip", "-n", br, "link", "set", f"v{i}", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", f"e{i}"])
            _run(["ip", "-n", ns, "link", "set", f"e{i}", "up"])
            _run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", f"e{i}"])

    def _nft(self, i: int, table: str, rules: Iterable[str]) -> None:
        ns_cmd = self.exec_prefix(i)
        subprocess.run(
            [*ns_cmd, "nft", "delete", "table", "inet", table], capture_output=True, check=False
        )
        body = "\n".join(rules)
        if not body:
            return
        script = (
            f"table inet {table} {{\n  chain input {{\n"
            f"    type filter hook input priority 0; policy accept;\n{body}\n  }}\n}}\n"
        )
        _run([*ns_cmd, "nft", "-f", "-"], stdin=script)

    def partition(self, *sides: Iterable[int]) -> None:
        """Only nodes on the same side hear each other (UDP); nodes not named are alone."""
        side_of: dict[int, int] = {}
        for k, side in enumerate(sides):
            for i in side:
                side_of[i] = k
        for i in range(1, self.n + 1):
            others = [
                self.addr(j)
                for j in range(1, self.n + 1)
                if j != i and side_of.get(j, -j) != side_of.get(i, -i)
            ]
            rules = (
                [f"    meta l4proto udp ip saddr {{ {', '.join(others)} }} drop"] if others else []
            )
            self._nft(i, "evs_partition", rules)

    def input_rules(self, i: int, table: str, rules: Iterable[str]) -> None:
        """Node ``i``'s own nftables table ``table`` on its input hook, one rule per line (the
        table is replaced; no rules removes it)."""
        self._nft(i, table, [f"    {r}" for r in rules])

    def heal(self) -> None:
        for i in range(1, self.n + 1):
            self._nft(i, "evs_partition", [])

    def loss(self, i: int, permille: int, port: int | None = None) -> None:
        """Drop ``permille``/1000 of the UDP datagrams node ``i`` receives (0 removes).

        With ``port``, only the datagrams to that UDP port (a cluster's). The input hook sees a
        datagram after reassembly, so a fragmented datagram is dropped whole or not at all.
        """
        match = f"udp dport {port}" if port else "meta l4proto udp"
        rules = (
            [f"    {match} numgen random mod 1000 < {permille} counter drop"] if permille else []
        )
        self._nft(i, "evs_loss", rules)

    def loss_dropped(self, i: int) -> int:
        """Datagrams the ``loss`` rule of node ``i`` has dropped so far (0 without a rule)."""
        r = subprocess.run(
            [*self.exec_prefix(i), "nft", "-j", "list", "table", "inet", "evs_loss"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            return 0  # no loss table on this node
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            raise LabError(
                f"nft -j list table inet evs_loss: not JSON: {r.stdout[:200]!r}"
            ) from None
        total = 0
        for item in doc.get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if isinstance(expr, dict) and "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total

    def _shape_ends(self, i: int) -> list[tuple[list[str], str]]:
        """Both ends of node ``i``'s link: (command prefix, device)."""
        return [
            (self.exec_prefix(i), f"e{i}"),
            (["ip", "netns", "exec", self.bridge_ns], f"v{i}"),
        ]

    def shape(self, i: int, rate: str | None) -> None:
        """Cap node ``i``'s link at ``rate`` (a tc rate: "100mbit") each way; None removes.

        A token bucket filter on the node's end (what it sends) and on the bridge's end (what
        it receives), with a 64 KiB bucket and at most 50 ms of queue, as a switch port would
        buffer; what does not fit is dropped.
        """
        for prefix, dev in self._shape_ends(i):
            subprocess.run(
                [*prefix, "tc", "qdisc", "del", "dev", dev, "root"],
                capture_output=True,
                check=False,
            )
            if rate:
                _run(
                    [
                        *(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf"),
                        *("rate", rate, "burst", "64kb", "latency", "50ms"),
                    ]
                )

    def shape_counters(self, i: int) -> dict[str, int]:
        """Packets, bytes, drops and overlimits (times a packet had to wait for tokens) of the
        token bucket filters of node ``i``'s link, both ends summed (zeros when unshaped)."""
        out = {"packets": 0, "bytes": 0, "drops": 0, "overlimits": 0}
        for prefix, dev in self._shape_ends(i):
            for q in _json([*prefix, "tc", "-s", "-j", "qdisc", "show", "dev", dev]):
                if q.get("kind") == "tbf":
                    for k in out:
                        out[k] += int(q.get(k, 0))
        return out

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()
        if self._owner is not None:
            self._owner.unlink(missing_ok=True)
            self._owner = None

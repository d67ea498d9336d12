"""A network lab on one machine: a namespace per node, veth links to a bridge, nftables faults.

Theory of operation: ``NetLab(n)`` creates a bridge namespace and one namespace per node, each
with a veth pair whose far end is enslaved to the bridge (no STP, no forwarding delay, no
multicast snooping, so IP multicast floods like on a plain switch), an address 10.N.0.i/24
and a multicast route on its link. Nothing is routed outside the lab. Faults are nftables
tables in a node's namespace, on its *input* hook, so they act per receiver even for
multicast: ``partition`` drops UDP from the nodes outside the receiver's side, ``loss`` drops a
random share of UDP. ``exec_prefix(i)`` is the command prefix that runs a program inside node
``i`` (``ip netns exec`` execs it, so the pid is the program's). Unix sockets live in the file
system, not in a network namespace, so clients outside the lab reach the executives' IPC
sockets directly. ``close()`` deletes every namespace it made (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

__all__ = ["LabError", "NetLab", "lab_available"]


class LabError(RuntimeError):
    """The lab could not be built (not root, or ip/nft missing)."""


def lab_available() -> str | None:
    """None when a lab can be built here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt install iproute2 nftables)"
    return None


def _run(args: Sequence[str], stdin: str | None = None) -> None:
    r = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")


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
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def addr(self, i: int) -> str:
        return f"10.{self.net}.0.{i}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def _build(self) -> None:
        br = f"{self.prefix}-br"
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

    def heal(self) -> None:
        for i in range(1, self.n + 1):
            self._nft(i, "evs_partition", [])

    def loss(self, i: int, permille: int) -> None:
        """Drop ``permille``/1000 of the UDP datagrams node ``i`` receives (0 removes)."""
        rules = (
            [f"    meta l4proto udp numgen random mod 1000 < {permille} drop"] if permille else []
        )
        self._nft(i, "evs_loss", rules)

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()

"""A local cluster of real executives for ``evs demo``, ``evs bench`` and the tests.

Theory of operation: ``LocalCluster`` writes one TOML configuration per node into a directory
(udpu or udp on 127.0.0.N, a state directory, an IPC socket, a log file and optionally a
trace) and, unless ``cipher="none"``, one cluster key (``authkey``, mode 0400) with a copy in
each node's directory, as each host has its own (a key rotation rewrites a node's copy);
it starts ``python -m evs daemon -c FILE`` processes, and kills, stops or restarts them on
request. It waits for an executive to listen on its socket before returning from
``start`` (polling the socket's existence with a bounded deadline: the only readiness signal a
daemon gives). ``DemoClient`` is a thin collector over ``evs.Client`` that remembers every
event so a caller can wait for a configuration or for messages with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import evs
from evs.cli._lab import NetLab
from evs.crypto import DEFAULT_CIPHER
from evs.daemon.key_file import KeyFileExists, read_key_file, write_key_file, write_private_file

__all__ = ["DemoClient", "LocalCluster", "free_port"]


def free_port() -> int:
    """A UDP port free on 127.0.0.1 now (the daemons bind it on 127.0.0.N)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """Executives on 127.0.0.1..N, each a real ``evs daemon`` process."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 3,
        port: int = 0,
        token: int = 1000,
        mode: str = "udpu",
        trace: bool = False,
        extra_totem: str = "",
        mcast_addr: str = "239.192.77.1",
        netmtu: int | None = None,
        lab: NetLab | None = None,
        profile_dir: Path | None = None,
        cipher: str = DEFAULT_CIPHER,
        extra_ipc: str = "",
    ) -> None:
        self.root = root
        self.cipher = cipher
        self.lab = lab
        #: When set, each executive runs under cProfile and writes ``daemon<N>.prof`` here at
        #: a clean exit (``evs bench --profile``; cProfile dumps on SystemExit too).
        self.profile_dir = profile_dir
        self.ids = list(range(1, nodes + 1))
        self.port = port or free_port()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        root.mkdir(parents=True, exist_ok=True)
        crypto = f'[crypto]\ncipher = "{cipher}"\n'
        if cipher != "none":
            with contextlib.suppress(KeyFileExists):  # a directory reused: keep its key
                write_key_file(self.key_file)
        for n in self.ids:
            d = root / f"node{n}"
            d.mkdir(parents=True, exist_ok=True)
            if cipher != "none":
                with contextlib.suppress(KeyFileExists):
                    write_private_file(self.node_key_file(n), read_key_file(self.key_file))
                crypto = f'[crypto]\ncipher = "{cipher}"\nkey_file = "{self.node_key_file(n)}"\n'
            node_list = "\n".join(
                f'[[node]]\nnodeid = {m}\naddr = "{self.addr(m)}"\n' for m in self.ids
            )
            trace_path = str(d / "trace.jsonl") if trace else ""
            text = (
                f'[totem]\ncluster_name = "demo"\nnodeid = {n}\ntoken = {token}\n{extra_totem}\n'
                f'[transport]\nmode = "{mode}"\nport = {self.port}\nbind = "{self.addr(n)}"\n'
                + (f'mcast_addr = "{mcast_addr}"\n' if mode == "udp" else "")
                + (f"netmtu = {netmtu}\n" if netmtu is not None else "")
                + f"\n{node_list}\n"
                f'[ipc]\nsocket = "{d / "evs.sock"}"\n{extra_ipc}\n'
                f'[state]\ndir = "{d / "state"}"\n\n'
                f"{crypto}\n"
                f'[logging]\nlevel = "info"\nfile = "{d / "evs.log"}"\n\n'
                f'[trace]\npath = "{trace_path}"\n'
            )
            (d / "evs.toml").write_text(text)
            self.logs[n] = d / "evs.log"

    @property
    def key_file(self) -> Path:
        """The cluster key every node's configuration names (when the cipher is not "none")."""
        return self.root / "authkey"

    def node_key_file(self, n: int) -> Path:
        """Node ``n``'s copy of the cluster key (its configuration names this one)."""
        return self.root / f"node{n}" / "authkey"

    def addr(self, n: int) -> str:
        """Node ``n``'s address: 127.0.0.n on loopback, or its lab address."""
        return self.lab.addr(n) if self.lab is not None else f"127.0.0.{n}"

    def config(self, n: int) -> Path:
        return self.root / f"node{n}" / "evs.toml"

    def socket(self, n: int) -> str:
        return str(self.root / f"node{n}" / "evs.sock")

    def trace(self, n: int) -> Path:
        return self.root / f"node{n}" / "trace.jsonl"

    def pid(self, n: int) -> int:
        return self.procs[n].pid

    def start(self, n: int, timeout: float = 15.0) -> None:
        """Start executive ``n`` and wait until its IPC socket accepts connections."""
        sock = self.socket(n)
        if os.path.exists(sock):
            os.unlink(sock)  # a stale socket of a killed executive
        prefix = self.lab.exec_prefix(n) if self.lab is not None else []
        stderr = open(self.root / f"node{n}" / "stderr.txt", "ab")  # noqa: SIM115
        profile = (
            ["-m", "cProfile", "-o", str(self.profile_dir / f"daemon{n}.prof")]
            if self.profile_dir is not None
            else []
        )
        self.procs[n] = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                *profile,
                "-m",
                "evs.cli",
                "daemon",
                "-c",
                str(self.config(n)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[n].poll() is not None:
                err = (self.root / f"node{n}" / "stderr.txt").read_text(errors="replace")
                raise RuntimeError(f"executive {n} exited at start: {err.strip()[-2000:]}")
            if _accepts(sock):
                return
            time.sleep(0.02)  # readiness poll of a separate process, bounded by the deadline
        raise TimeoutError(f"executive {n} did not listen on {sock} within {timeout} s")

    def kill(self, n: int, sig: int = signal.SIGKILL) -> None:
        self.procs[n].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[n].wait()

    def terminate(self, n: int) -> None:
        if self.procs[n].poll() is None:
            self.procs[n].terminate()

    def wait(self, n: int, timeout: float = 15.0) -> int:
        return self.procs[n].wait(timeout)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _accepts(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


class DemoClient:
    """An ``evs.Client`` joined to one group that records every event it dispatches."""

    def __init__(self, nodeid: int, path: str, group: str = "demo") -> None:
        self.nodeid = nodeid
        self.group = group
        self.client = evs.Client(path)
        self.events: list[evs.Event] = []
        self.client.join([group])

    def send(self, text: str, guarantee: evs.Guarantee = evs.Guarantee.AGREED) -> None:
        self.client.mcast_groups([self.group], text.encode(), guarantee, timeout=10)

    def _pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"node {self.nodeid}: no {what} within {timeout} s")
            for ev in self.client.events(timeout=min(left, 0.5)):
                self.events.append(ev)
                if until():
                    return

    def configs(self) -> list[evs.ConfigChange]:
        return [e for e in self.events if isinstance(e, evs.ConfigChange)]

    def wait_config(
        self, match: Callable[[evs.ConfigChange], bool], timeout: float
    ) -> evs.ConfigChange:
        """The first configuration change not yet waited for that ``match`` accepts."""
        seen: list[evs.ConfigChange] = []

        def found() -> bool:
            seen[:] = [c for c in self.configs()[self._config_mark :] if match(c)]
            return bool(seen)

        self._pump(found, timeout, "matching configuration")
        conf = seen[0]
        self._config_mark = self.configs().index(conf) + 1
        return conf

    _config_mark = 0

    def messages(self, phase: str) -> list[str]:
        out = []
        for e in self.events:
            if isinstance(e, evs.Delivery):
                text = e.data.decode(errors="replace")
                if text.startswith(phase + ":"):
                    out.append(text)
        return out

    def wait_messages(self, phase: str, count: int, timeout: float) -> None:
        self._pump(lambda: len(self.messages(phase)) >= count, timeout, f"{count} messages")

    def close(self) -> None:
        self.client.close()

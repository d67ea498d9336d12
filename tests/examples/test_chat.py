"""examples/chat.sh: two chat sessions on two executives; a line typed in one is printed by
the listener of both (through ``evs listen`` / ``evs send``)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from evs.cli._cluster import LocalCluster
from examples.example_support import EXAMPLES, ring_formed, start_all, subprocess_env


class Session:
    """A running chat.sh whose output lines are read by a thread into a queue."""

    def __init__(self, name: str, socket: str, env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("w") as err:
            self.proc = subprocess.Popen(
                ["bash", str(EXAMPLES / "chat.sh"), name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**env, "EVS_SOCKET": socket},
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pred: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0))
            except queue.Empty:
                err = self.stderr.read_text()
                raise AssertionError(
                    f"no matching line within {timeout} s: {self.seen}; stderr: {err}"
                ) from None
            self.seen.append(line)
            if pred(line):
                return line

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def test_chat_between_two_nodes(make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    cluster = make_cluster(2)
    start_all(cluster)
    ring_formed(cluster, (1, 2))
    # chat.sh runs `evs`: a shim for this interpreter and this checkout, first on PATH.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "evs"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m evs.cli "$@"\n')
    shim.chmod(0o755)
    env = subprocess_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    alice = Session("alice", cluster.socket(1), env, tmp_path / "alice.err")
    bob = Session("bob", cluster.socket(2), env, tmp_path / "bob.err")
    try:
        # Each listener prints the current configuration first: then it has joined.
        for s in (alice, bob):
            s.expect(lambda line: line.startswith("-- regular configuration"), 10)
        alice.say("hello bob")
        for s in (alice, bob):
            line = s.expect(lambda line: "alice: hello bob" in line, 10)
            assert line.startswith("node 1 pid ")
        bob.say("hi alice")
        for s in (alice, bob):
            s.expect(lambda line: "bob: hi alice" in line, 10)
    finally:
        codes = [alice.quit(), bob.quit()]
    assert codes == [0, 0]

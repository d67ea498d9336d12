"""Target ``config``: mutated configuration files through ``load_config``.

Theory of operation: the corpus is a few valid files written by ``render_config`` (1 to 5
nodes, udpu and udp, cipher none and chacha20-poly1305, extra ``[totem]`` keys, a log file,
a trace path), drawn from the seed. Each case takes one and damages it at the level the
parser sees, then writes it to a file of its process in the temporary directory (removed after each
load) and loads it with the
real ``load_config``:

* line level: a line deleted, duplicated, moved, or its value replaced by a hostile TOML value
  (integer extremes, -0, floats nan, inf, 1e308, strings empty, huge, with NUL or ``..``,
  booleans, arrays, inline tables, dates), a key renamed, a section header renamed or
  repeated, a ``[[node]]`` table repeated or emptied, a stray key added;
* byte level (two cases in five, stacked on the above or alone): ``engine.mutate``, which
  also makes invalid UTF-8 and broken TOML syntax.

Oracle: ``load_config`` returns a ``DaemonConfig`` or raises ``ConfigFileError`` whose file,
key and reason are all non-empty; any other exception is a failure. The unit is a file.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from random import Random

from evs.daemon.config_file import ConfigFileError, DaemonConfig, load_config, render_config
from evs.fuzz_targets.engine import Case, Escaped, mutate

__all__ = ["ConfigTarget"]

_VALUES = (
    "0", "-1", "1", "-0", "+0", "9223372036854775807", "-9223372036854775808",
    "18446744073709551616", "4294967295", "4294967296", "65535", "65536", "0x7fffffff",
    "1e308", "-1e308", "nan", "inf", "-inf", "0.0", "1.5", "5e-324", '""', '"x"',
    '"' + "a" * 5000 + '"', '"\\u0000"', '"../../etc/passwd"', '"/"', '"127.0.0.1"',
    '"999.1.1.1"', '"127.0.0.1:0"', '"127.0.0.1:70000"', '"::1"', '"239.192.0.1"', "true",
    "false", "[]", "[1, 2]", '["a", 1]', "{}", "{ a = 1 }", "1979-05-27T07:32:00Z",
    "07:32:00", '"none"', '"aes-256-gcm"', '"udp"', '"udpu"', '"debug"', "'''x'''",
)  # fmt: skip
_KEYS = (
    "nodeid",
    "token",
    "port",
    "addr",
    "mode",
    "bind",
    "cipher",
    "key_file",
    "socket",
    "dir",
    "path",
    "level",
    "file",
    "cluster_name",
    "join",
    "consensus",
    "zzz",
    "",
)
_SECTIONS = (
    "[totem]",
    "[transport]",
    "[[node]]",
    "[ipc]",
    "[crypto]",
    "[logging]",
    "[trace]",
    "[state]",
    "[node]",
    "[[totem]]",
    "[nope]",
    "[totem.x]",
)


def _corpus(seed: int, where: Path) -> list[str]:
    rng = Random(f"config-corpus/{seed}")
    texts = []
    for i in range(12):
        n = rng.randint(1, 5)
        nodes = {k: (f"10.0.0.{k}", rng.choice((5405, 5405, 6000 + k))) for k in range(1, n + 1)}
        totem: dict[str, float | int | str] = {}
        if rng.random() < 0.5:
            totem = {"token": rng.choice((1000, 3000)), "consensus": rng.choice((3600, 4000))}
        cipher = ("none", "chacha20-poly1305")[i % 2]
        texts.append(
            render_config(
                rng.randint(1, n),
                nodes,
                socket=where / "evs.sock",
                state_dir=where / "state",
                trace_path=rng.choice(("", where / "trace.bin")),
                mode=rng.choice(("udpu", "udp")),
                log_file=rng.choice(("", where / "evs.log")),
                totem=totem,
                key_file=None if cipher == "none" else where / "authkey",
                cipher=cipher,
            )
        )
    return texts


def _damage_lines(text: str, rng: Random) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        line = lines[i]
        op = rng.randrange(8)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, line)
        elif op == 2:
            lines.insert(rng.randrange(len(lines) + 1), lines.pop(i))
        elif op in (3, 4) and "=" in line:
            key = line.split("=", 1)[0]
            lines[i] = f"{key}= {rng.choice(_VALUES)}"
        elif op == 5 and "=" in line:
            lines[i] = f"{rng.choice(_KEYS)} =" + line.split("=", 1)[1]
        elif op == 6:
            lines.insert(i, rng.choice(_SECTIONS))
        else:
            lines.insert(i, f"{rng.choice(_KEYS)} = {rng.choice(_VALUES)}")
        if not lines:
            break
    return "\n".join(lines)


def _case(texts: list[str], where: Path, rng: Random, seen: Counter[str]) -> int:
    text = rng.choice(texts)
    raw = text.encode()
    pick = rng.randrange(5)
    if pick != 0:
        raw = _damage_lines(text, rng).encode()
    if pick < 2:
        raw = mutate(raw, rng, [t.encode() for t in texts[:2]])
    path = where / f"evs-fuzz-config-{os.getpid()}.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path)
    except ConfigFileError as exc:
        path.unlink()
        if not (exc.file and exc.key and exc.reason):
            raise Escaped(f"a ConfigFileError without file, key or reason: {exc!r}") from None
        at = "TOML syntax" if exc.key.startswith("line ") else exc.key.split(".")[0]
        seen["refused at " + at.split("[")[0]] += 1
        return 1
    path.unlink()
    seen["loaded"] += 1
    if not isinstance(config, DaemonConfig):
        raise Escaped(f"load_config returned a {type(config).__name__}")
    return 1


class ConfigTarget:
    name = "config"
    unit = "files"

    def prepare(self, seed: int) -> Case:
        # Paths named in the files are never created: loading does no I/O but the read.
        where = Path(tempfile.gettempdir())
        texts = _corpus(seed, where)
        return lambda rng, seen: _case(texts, where, rng, seen)

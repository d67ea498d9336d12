"""The executive's TOML configuration file (api.md section 3): load, validate, render.

Theory of operation: ``load_config`` parses the file with ``tomllib`` and walks it one section
at a time. Each section is read through a ``_Table`` that pops the keys it knows, checks each
value's type and range, and complains about whatever is left, so a misspelt key is an error
rather than a silently ignored default. The ``[totem]`` keys are not listed here: they are
TotemConfig's own field names (corosync's names), read from the dataclass, so a constant added
to the core is configurable at once. After the sections, the cross-section rules run: the node
list (unique ids and addresses), which entry is this processor, and TotemConfig's relations
(its ConfigError is re-raised naming the key it mentions).

Every refusal is one ``ConfigFileError`` whose message is ``<file>: <section.key>: <reason>``
(``node[2].addr`` for the second ``[[node]]`` table), ready for the command line to print
without a traceback. Relative paths in the file are taken relative to the file's directory, so
the meaning of a config does not depend on the directory the daemon was started from.

Addresses are IPv4 literals: host names are not resolved, so loading a file does no I/O but
reading it and the node list means the same thing on every processor.

``render_config`` writes the text of a valid file for a generated cluster (``evs demo``, tests).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evs.crypto import CIPHERS, DEFAULT_CIPHER
from evs.runtime.send_window import SEND_WINDOW
from evs.totem.config import ConfigError, TotemConfig

__all__ = [
    "DEFAULT_CIPHER",
    "DEFAULT_KEY_FILE",
    "DEFAULT_PORT",
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "TOTEM_KEYS",
    "ConfigFileError",
    "CryptoSection",
    "DaemonConfig",
    "IpcSection",
    "LoggingSection",
    "NodeEntry",
    "TransportSection",
    "load_config",
    "render_config",
]

DEFAULT_PORT = 5405
DEFAULT_SOCKET = "/run/evs/evs.sock"
DEFAULT_STATE_DIR = "/var/lib/evs"
DEFAULT_KEY_FILE = "/etc/evs/authkey"
#: Socket buffers asked for by default: a few token rotations of full windows (the kernel
#: may grant less; the transport records what it got).
DEFAULT_SOCKET_BUFFER = 4 << 20
#: Bytes of undelivered events one IPC client may have queued before it is disconnected.
DEFAULT_CLIENT_QUEUE_BYTES = 8 << 20
#: Bytes of windowed sends one client may have on their way: the runtime's default.
DEFAULT_SEND_WINDOW_BYTES = SEND_WINDOW
#: Longest hold of a node's client sends while one of its clients catches up (ms).
DEFAULT_READER_HOLD_MS = 1000
_NODEID_MAX = (1 << 32) - 1  # node ids are u32 on the wire, 0 means "every node"
_BUFFER_RANGE = (4096, 1 << 30)
_LEVELS = ("debug", "info", "warning", "error")
_MODES = ("udpu", "udp")

#: The [totem] keys: TotemConfig's fields (netmtu lives in [transport], as in corosync).
TOTEM_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(TotemConfig) if f.init and f.name != "netmtu"
)
_TOTEM_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(TotemConfig)}


class ConfigFileError(ValueError):
    """The configuration file is unreadable or refused; ``str()`` says file, key and why."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One ``[[node]]``: a processor of the cluster and the address it sends from."""

    nodeid: int
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class TransportSection:
    mode: Literal["udpu", "udp"] = "udpu"
    #: Default port of the node entries and the multicast group's port.
    port: int = DEFAULT_PORT
    #: This processor's own address (derived from its node entry when not given).
    bind: str = "127.0.0.1"
    mcast_addr: str | None = None
    #: Multicast TTL ("udp" mode): 1 keeps the ring on one subnet.
    ttl: int = 1
    netmtu: int = 1500
    rcvbuf: int = DEFAULT_SOCKET_BUFFER
    sndbuf: int = DEFAULT_SOCKET_BUFFER


@dataclass(frozen=True, slots=True)
class IpcSection:
    socket: Path = Path(DEFAULT_SOCKET)
    #: Extra uids and gids the IPC server admits (policy is the server's; see its docs).
    allowed_uids: tuple[int, ...] = ()
    allowed_gids: tuple[int, ...] = ()
    client_queue_bytes: int = DEFAULT_CLIENT_QUEUE_BYTES
    #: Bytes of messages one client may stream before the executive has taken them.
    send_window_bytes: int = DEFAULT_SEND_WINDOW_BYTES
    #: How long this node's client sends may wait for a client that is more than half its
    #: queue behind (``EvsService.check_readers``); 0 never waits.
    reader_hold_ms: int = DEFAULT_READER_HOLD_MS


@dataclass(frozen=True, slots=True)
class CryptoSection:
    #: One of evs.crypto.CIPHERS; "none" only when a file says so.
    cipher: str = DEFAULT_CIPHER
    #: Read (and its permissions checked) when the executive starts, not at load time.
    key_file: Path = Path(DEFAULT_KEY_FILE)


@dataclass(frozen=True, slots=True)
class LoggingSection:
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: None: standard error.
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything ``evs daemon`` needs, validated; built only by ``load_config``."""

    path: Path
    nodeid: int
    nodes: tuple[NodeEntry, ...]
    totem: TotemConfig
    transport: TransportSection
    ipc: IpcSection
    crypto: CryptoSection
    logging: LoggingSection
    #: JSON-lines trace of this executive; None: off.
    trace_path: Path | None
    state_dir: Path

    @property
    def cluster_name(self) -> str:
        return self.totem.cluster_name

    def totem_config(self) -> TotemConfig:
        """The protocol constants (validated at load time, so this cannot fail)."""
        return self.totem

    def node_addresses(self) -> dict[int, tuple[str, int]]:
        """Node id -> (host, port), the transport's view of the node list."""
        return {n.nodeid: n.address for n in self.nodes}

    @property
    def own_address(self) -> tuple[str, int]:
        """Where this processor's unicast socket binds: its node entry's address."""
        return self.node_addresses()[self.nodeid]


# ---------------------------------------------------------------------------------- reading


class _Table:
    """One TOML table being read: typed pops, then ``done()`` refuses the keys left over."""

    def __init__(self, file: str, name: str, data: Any, known: Sequence[str]) -> None:
        self.file = file
        self.name = name
        self.known = ", ".join(known)
        if not isinstance(data, dict):
            raise ConfigFileError(file, name, f"must be a table, got {_kind(data)}")
        self.data: dict[str, Any] = dict(data)

    def fail(self, key: str, reason: str) -> ConfigFileError:
        return ConfigFileError(self.file, f"{self.name}.{key}", reason)

    def has(self, key: str) -> bool:
        return key in self.data

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be {lo}..{hi}, got {value}")
        return int(value)

    def number(self, key: str) -> float:
        value = self.data.pop(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value}")
        return float(value)

    def string(self, key: str, default: str) -> str:
        value = self.data.pop(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {_kind(value)}")
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            listed = ", ".join(f'"{c}"' for c in choices)
            raise self.fail(key, f'must be one of {listed}, got "{value}"')
        return value

    def ids(self, key: str) -> tuple[int, ...]:
        value = self.data.pop(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of integers, got {_kind(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 1 << 32:
                raise self.fail(key, f"must be a list of ids 0..{(1 << 32) - 1}, got {item!r}")
        return tuple(value)

    def path(self, key: str, default: str, base: Path) -> Path | None:
        """A path relative to the file's directory; an empty string reads as None."""
        text = self.string(key, default)
        if "\0" in text:
            raise self.fail(key, "must not contain a NUL character")
        return base / text if text else None

    def required_path(self, key: str, default: str, base: Path) -> Path:
        found = self.path(key, default, base)
        if found is None:
            raise self.fail(key, "must not be empty")
        return found

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise self.fail(key, f"unknown key (known here: {self.known})")


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _ipv4(table: _Table, key: str, text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise table.fail(
            key, f'"{text}" is not an IPv4 address like 192.0.2.1 (names are not resolved)'
        ) from None


def _host_port(table: _Table, key: str, text: str, default_port: int) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port = text, default_port
    elif not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise table.fail(key, f'port in "{text}" must be 1..65535')
    else:
        port = int(port_text)
    return _unicast(table, key, host), port


def _unicast(table: _Table, key: str, text: str) -> str:
    """A processor's address: it must name one host, as peers match sources against it."""
    addr = _ipv4(table, key, text)
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise table.fail(key, f'"{text}" is not a unicast address of one host')
    return str(addr)


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate the file at ``path``; raise ConfigFileError, never anything else."""
    path = Path(path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(file, "file", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(file, "file", f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(file, str(exc)) from None
    return _build(file, path.parent.absolute(), doc)


def _syntax_error(file: str, message: str) -> ConfigFileError:
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        where = f"line {found.group(1)}, column {found.group(2)}"
        return ConfigFileError(file, where, f"TOML syntax: {message[: found.start()]}")
    return ConfigFileError(file, "TOML syntax", message)


_SECTIONS = ("totem", "transport", "node", "ipc", "crypto", "logging", "trace", "state")


def _build(file: str, base: Path, doc: dict[str, Any]) -> DaemonConfig:
    for name in doc:
        if name not in _SECTIONS:
            raise ConfigFileError(file, name, f"unknown section (known: {', '.join(_SECTIONS)})")

    def table(name: str, known: Sequence[str]) -> _Table:
        return _Table(file, name, doc.get(name, {}), known)

    totem = table("totem", ("nodeid", *TOTEM_KEYS))
    nodeid = totem.integer("nodeid", 0, 1, _NODEID_MAX) if totem.has("nodeid") else None
    totem_values = _totem_values(totem)
    totem.done()

    transport, bind_given = _transport(table("transport", _TRANSPORT_KEYS))
    nodes = _nodes(file, doc.get("node", []), transport.port)
    nodeid, transport = _own_node(file, nodes, nodeid, transport, bind_given)
    totem_cfg = _totem_config(file, totem_values, transport.netmtu)

    ipc = table(
        "ipc",
        (
            "socket",
            "allowed_uids",
            "allowed_gids",
            "client_queue_bytes",
            "send_window_bytes",
            "reader_hold_ms",
        ),
    )
    ipc_section = IpcSection(
        socket=ipc.required_path("socket", DEFAULT_SOCKET, base),
        allowed_uids=ipc.ids("allowed_uids"),
        allowed_gids=ipc.ids("allowed_gids"),
        client_queue_bytes=ipc.integer(
            "client_queue_bytes", DEFAULT_CLIENT_QUEUE_BYTES, 65536, 1 << 34
        ),
        send_window_bytes=ipc.integer(
            "send_window_bytes", DEFAULT_SEND_WINDOW_BYTES, 4096, 1 << 30
        ),
        reader_hold_ms=ipc.integer("reader_hold_ms", DEFAULT_READER_HOLD_MS, 0, 60000),
    )
    if ipc_section.client_queue_bytes < totem_cfg.max_message_size:
        raise ipc.fail(
            "client_queue_bytes",
            f"must hold one largest message: at least totem.max_message_size "
            f"({totem_cfg.max_message_size}), got {ipc_section.client_queue_bytes}",
        )
    ipc.done()

    crypto = table("crypto", ("cipher", "key_file"))
    cipher = crypto.choice("cipher", DEFAULT_CIPHER, CIPHERS)
    crypto_section = CryptoSection(
        cipher=cipher, key_file=crypto.required_path("key_file", DEFAULT_KEY_FILE, base)
    )
    crypto.done()

    logging = table("logging", ("level", "file"))
    logging_section = LoggingSection(
        level=logging.choice("level", "info", _LEVELS),  # type: ignore[arg-type]
        file=logging.path("file", "", base),
    )
    logging.done()

    trace = table("trace", ("path",))
    trace_path = trace.path("path", "", base)
    trace.done()

    state = table("state", ("dir",))
    state_dir = state.required_path("dir", DEFAULT_STATE_DIR, base)
    state.done()

    return DaemonConfig(
        path=base / Path(file).name,
        nodeid=nodeid,
        nodes=nodes,
        totem=totem_cfg,
        transport=transport,
        ipc=ipc_section,
        crypto=crypto_section,
        logging=logging_section,
        trace_path=trace_path,
        state_dir=state_dir,
    )


def _totem_values(totem: _Table) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in TOTEM_KEYS:
        if not totem.has(key):
            continue
        kind = _TOTEM_TYPES[key]
        if kind == "str":
            values[key] = totem.string(key, "")
        elif kind == "int":
            values[key] = totem.integer(key, 0, 0, 1 << 62)
        elif kind in ("float", "float | None"):
            values[key] = totem.number(key)
            if values[key] < 0:
                raise totem.fail(key, f"must not be negative, got {values[key]:g}")
        else:  # a new TotemConfig field of a type this reader does not know yet
            raise totem.fail(key, f"cannot be set from a file (type {kind})")
    return values


def _totem_config(file: str, values: dict[str, Any], netmtu: int) -> TotemConfig:
    try:
        return TotemConfig(**values, netmtu=netmtu)
    except ConfigError as exc:
        reason = str(exc)
        named = [k for k in (*TOTEM_KEYS, "netmtu") if re.search(rf"\b{k}\b", reason)]
        named.sort(key=reason.find)
        # Blame a key the file set, if the message names one; else the first it names.
        blamed = next((k for k in named if k in values or k == "netmtu"), None)
        blamed = blamed or (named[0] if named else "totem")
        section = "transport" if blamed == "netmtu" else "totem"
        raise ConfigFileError(file, f"{section}.{blamed}", reason) from None


_TRANSPORT_KEYS = ("mode", "port", "bind", "mcast_addr", "ttl", "netmtu", "rcvbuf", "sndbuf")


def _transport(t: _Table) -> tuple[TransportSection, bool]:
    mode = t.choice("mode", "udpu", _MODES)
    port = t.integer("port", DEFAULT_PORT, 1, 65535)
    bind_given = t.has("bind")
    bind = _unicast(t, "bind", t.string("bind", "127.0.0.1"))
    mcast: str | None = None
    if t.has("mcast_addr"):
        mcast_text = t.string("mcast_addr", "")
        group = _ipv4(t, "mcast_addr", mcast_text)
        if not group.is_multicast:
            raise t.fail("mcast_addr", f'"{mcast_text}" is not a multicast address (224.0.0.0/4)')
        mcast = str(group)
    elif mode == "udp":
        raise t.fail("mcast_addr", 'required in "udp" mode (e.g. "239.192.0.1")')
    section = TransportSection(
        mode=mode,  # type: ignore[arg-type]
        port=port,
        bind=bind,
        mcast_addr=mcast,
        ttl=t.integer("ttl", 1, 0, 255),
        netmtu=t.integer("netmtu", 1500, 576, 65507),
        rcvbuf=t.integer("rcvbuf", DEFAULT_SOCKET_BUFFER, *_BUFFER_RANGE),
        sndbuf=t.integer("sndbuf", DEFAULT_SOCKET_BUFFER, *_BUFFER_RANGE),
    )
    t.done()
    return section, bind_given


def _nodes(file: str, raw: Any, default_port: int) -> tuple[NodeEntry, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, dict) for n in raw):
        raise ConfigFileError(file, "node", "must be an array of tables: [[node]] ...")
    if not raw:
        raise ConfigFileError(file, "node", "at least one [[node]] table is required")
    entries: list[NodeEntry] = []
    ids: dict[int, int] = {}
    addresses: dict[tuple[str, int], int] = {}
    for index, item in enumerate(raw, 1):
        t = _Table(file, f"node[{index}]", item, ("nodeid", "addr"))
        if not t.has("nodeid"):
            raise t.fail("nodeid", "required")
        if not t.has("addr"):
            raise t.fail("addr", "required")
        nodeid = t.integer("nodeid", 0, 1, _NODEID_MAX)
        host, port = _host_port(t, "addr", t.string("addr", ""), default_port)
        t.done()
        if nodeid in ids:
            raise t.fail("nodeid", f"{nodeid} is already node[{ids[nodeid]}]'s id")
        if (host, port) in addresses:
            other = addresses[(host, port)]
            raise t.fail("addr", f"{host}:{port} is already node[{other}]'s address")
        ids[nodeid] = index
        addresses[(host, port)] = index
        entries.append(NodeEntry(nodeid, host, port))
    return tuple(entries)


def _own_node(
    file: str,
    nodes: tuple[NodeEntry, ...],
    nodeid: int | None,
    transport: TransportSection,
    bind_given: bool,
) -> tuple[int, TransportSection]:
    """Which entry is this processor; its address is what the transport binds."""
    if nodeid is None:
        if not bind_given:
            raise ConfigFileError(file, "totem.nodeid", "required when transport.bind is not set")
        mine = [n for n in nodes if n.host == transport.bind]
        if not mine:
            raise ConfigFileError(
                file,
                "transport.bind",
                f"no [[node]] has the address {transport.bind}; add one or set totem.nodeid",
            )
        if len(mine) > 1:
            listed = ", ".join(str(n.nodeid) for n in mine)
            raise ConfigFileError(
                file,
                "totem.nodeid",
                f"required: nodes {listed} share the bind address {transport.bind}",
            )
        return mine[0].nodeid, transport
    entry = next((n for n in nodes if n.nodeid == nodeid), None)
    if entry is None:
        raise ConfigFileError(file, "totem.nodeid", f"{nodeid} is not in the [[node]] list")
    if not bind_given:
        return nodeid, dataclasses.replace(transport, bind=entry.host)
    if entry.host != transport.bind:
        raise ConfigFileError(
            file,
            "transport.bind",
            f"{transport.bind} is not node {nodeid}'s address {entry.host}: "
            "peers know a processor by the address it sends from",
        )
    return nodeid, transport


# ---------------------------------------------------------------------------------- writing


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters (C0, DEL, C1) escaped."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def render_config(
    nodeid: int,
    nodes: Mapping[int, tuple[str, int]],
    *,
    socket: str | Path,
    state_dir: str | Path,
    trace_path: str | Path = "",
    mode: Literal["udpu", "udp"] = "udpu",
    port: int = DEFAULT_PORT,
    mcast_addr: str = "239.192.0.1",
    token: float | None = None,
    cluster_name: str = "evs",
    log_level: str = "info",
    log_file: str | Path = "",
    totem: Mapping[str, float | int | str] | None = None,
    key_file: str | Path | None = None,
    cipher: str = DEFAULT_CIPHER,
) -> str:
    """The text of a config file for processor ``nodeid`` of the cluster ``nodes``.

    ``nodes`` maps node id -> (host, port); a port equal to ``port`` is written as the bare
    host. The result is meant to load as is; ``load_config`` still checks it. A cipher other
    than "none" needs ``key_file`` (make it with ``evs.daemon.key_file.write_key_file``).
    """
    if cipher != "none" and key_file is None:
        raise ValueError(f'cipher "{cipher}" needs a key_file (or pass cipher="none")')
    lines = ["# generated by evs.daemon.config_file.render_config", "", "[totem]"]
    lines.append(f"cluster_name = {_toml_string(cluster_name)}")
    lines.append(f"nodeid = {nodeid}")
    extra = dict(totem or {})
    if token is not None:
        extra["token"] = token
    lines += [f"{key} = {_toml_value(value)}" for key, value in extra.items()]
    host = nodes[nodeid][0] if nodeid in nodes else "127.0.0.1"
    lines += ["", "[transport]", f"mode = {_toml_string(mode)}", f"port = {port}"]
    lines.append(f"bind = {_toml_string(host)}")
    if mode == "udp":
        lines.append(f"mcast_addr = {_toml_string(mcast_addr)}")
    for node, (node_host, node_port) in sorted(nodes.items()):
        addr = node_host if node_port == port else f"{node_host}:{node_port}"
        lines += ["", "[[node]]", f"nodeid = {node}", f"addr = {_toml_string(addr)}"]
    lines += ["", "[ipc]", f"socket = {_toml_value(socket)}"]
    lines += ["", "[crypto]", f"cipher = {_toml_string(cipher)}"]
    if key_file is not None:
        lines.append(f"key_file = {_toml_value(key_file)}")
    lines += ["", "[logging]", f"level = {_toml_string(log_level)}"]
    if str(log_file):
        lines.append(f"file = {_toml_value(log_file)}")
    lines += ["", "[trace]", f"path = {_toml_value(trace_path)}"]
    lines += ["", "[state]", f"dir = {_toml_value(state_dir)}", ""]
    return "\n".join(lines)

"""The TOML config: every section and default, each refusal with its message, render -> load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evs.daemon.config_file import (
    DEFAULT_SOCKET,
    TOTEM_KEYS,
    ConfigFileError,
    DaemonConfig,
    load_config,
    render_config,
)
from evs.totem.config import TotemConfig

NODES = """
[[node]]
nodeid = 1
addr = "127.0.0.1"

[[node]]
nodeid = 2
addr = "127.0.0.2"
"""

MINIMAL = '[transport]\nbind = "127.0.0.1"\n' + NODES


def load(tmp_path: Path, text: str) -> DaemonConfig:
    path = tmp_path / "evs.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def refused(tmp_path: Path, text: str) -> str:
    """The message of the refusal, checked to start with the file name."""
    with pytest.raises(ConfigFileError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'evs.toml'}: ")
    return message.split(": ", 1)[1]


def test_minimal_file_takes_every_default(tmp_path: Path) -> None:
    c = load(tmp_path, MINIMAL)
    assert c.nodeid == 1
    assert c.cluster_name == "evs"
    assert c.totem_config() == TotemConfig()
    assert c.transport.mode == "udpu"
    assert c.transport.port == 5405
    assert c.transport.bind == "127.0.0.1"
    assert c.transport.mcast_addr is None
    assert (c.transport.ttl, c.transport.netmtu) == (1, 1500)
    assert c.transport.rcvbuf == c.transport.sndbuf == 4 << 20
    assert c.node_addresses() == {1: ("127.0.0.1", 5405), 2: ("127.0.0.2", 5405)}
    assert c.own_address == ("127.0.0.1", 5405)
    assert c.ipc.socket == Path(DEFAULT_SOCKET)
    assert c.ipc.allowed_uids == c.ipc.allowed_gids == ()
    assert c.ipc.client_queue_bytes == 8 << 20
    assert c.ipc.send_window_bytes == 512 << 10
    assert c.ipc.reader_hold_ms == 1000
    assert c.crypto.cipher == "chacha20-poly1305"  # wire security unless a file says "none"
    assert c.crypto.key_file == Path("/etc/evs/authkey")
    assert c.logging.level == "info"
    assert c.logging.file is None
    assert c.trace_path is None
    assert c.state_dir == Path("/var/lib/evs")
    assert c.path == tmp_path / "evs.toml"


def test_every_section_read(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        """
[totem]
cluster_name = "prod"
nodeid = 2
token = 3000
token_retransmit = 700
hold = 180
join = 60
send_join = 10
consensus = 3600
merge = 250
downcheck = 900
fail_recv_const = 100
seqno_unchanged_const = 20
window_size = 50
max_messages = 17
token_retransmits_before_loss_const = 5
miss_count_const = 6
max_message_size = 65536
queue_bytes_max = 1048576

[transport]
mode = "udp"
port = 6000
bind = "10.0.0.2"
mcast_addr = "239.192.0.9"
ttl = 4
netmtu = 9000
rcvbuf = 1048576
sndbuf = 2097152

[[node]]
nodeid = 1
addr = "10.0.0.1"

[[node]]
nodeid = 2
addr = "10.0.0.2:6001"

[ipc]
socket = "/run/x/evs.sock"
allowed_uids = [1000, 1001]
allowed_gids = [50]
client_queue_bytes = 131072
send_window_bytes = 65536
reader_hold_ms = 250

[crypto]
cipher = "none"
key_file = "/etc/x/key"

[logging]
level = "debug"
file = "/var/log/evs.log"

[trace]
path = "/var/log/evs.trace"

[state]
dir = "/var/lib/x"
""",
    )
    t = c.totem_config()
    assert (t.cluster_name, t.token, t.token_retransmit_ms, t.hold_ms) == ("prod", 3000, 700, 180)
    assert (t.join, t.send_join, t.consensus_ms, t.merge, t.downcheck) == (60, 10, 3600, 250, 900)
    assert (t.fail_recv_const, t.seqno_unchanged_const, t.miss_count_const) == (100, 20, 6)
    assert (t.window_size, t.max_messages, t.token_retransmits_before_loss_const) == (50, 17, 5)
    assert (t.max_message_size, t.queue_bytes_max, t.netmtu) == (65536, 1 << 20, 9000)
    assert c.nodeid == 2
    assert c.own_address == ("10.0.0.2", 6001)
    tr = c.transport
    assert (tr.mode, tr.port, tr.bind, tr.mcast_addr) == ("udp", 6000, "10.0.0.2", "239.192.0.9")
    assert (tr.ttl, tr.netmtu, tr.rcvbuf, tr.sndbuf) == (4, 9000, 1 << 20, 2 << 20)
    assert c.ipc.socket == Path("/run/x/evs.sock")
    assert (c.ipc.allowed_uids, c.ipc.allowed_gids) == ((1000, 1001), (50,))
    assert c.ipc.client_queue_bytes == 131072
    assert c.ipc.send_window_bytes == 65536
    assert c.ipc.reader_hold_ms == 250
    assert c.crypto.key_file == Path("/etc/x/key")
    assert (c.logging.level, c.logging.file) == ("debug", Path("/var/log/evs.log"))
    assert c.trace_path == Path("/var/log/evs.trace")
    assert c.state_dir == Path("/var/lib/x")


@pytest.mark.parametrize("key", TOTEM_KEYS)
def test_every_totem_constant_is_a_key(tmp_path: Path, key: str) -> None:
    """Each TotemConfig field can be set by its own name (here to its default value)."""
    default = getattr(TotemConfig(), key)
    if default is None:
        default = {
            "token_retransmit": 235,
            "token_retransmit_min": 5,
            "hold": 178,
            "consensus": 1200,
        }[key]
    value = f'"{default}"' if isinstance(default, str) else repr(default)
    c = load(tmp_path, f"[totem]\n{key} = {value}\n" + MINIMAL)
    assert getattr(c.totem_config(), key) == default


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        MINIMAL
        + '[ipc]\nsocket = "run/evs.sock"\n[trace]\npath = "t.jsonl"\n[state]\ndir = "st"\n'
        + '[logging]\nfile = "log/evs.log"\n[crypto]\nkey_file = "key"\n',
    )
    assert c.ipc.socket == tmp_path / "run/evs.sock"
    assert c.trace_path == tmp_path / "t.jsonl"
    assert c.state_dir == tmp_path / "st"
    assert c.logging.file == tmp_path / "log/evs.log"
    assert c.crypto.key_file == tmp_path / "key"


# ------------------------------------------------------------------------ which node am I


def test_nodeid_derived_from_bind(tmp_path: Path) -> None:
    assert load(tmp_path, '[transport]\nbind = "127.0.0.2"\n' + NODES).nodeid == 2


def test_bind_derived_from_nodeid(tmp_path: Path) -> None:
    c = load(tmp_path, "[totem]\nnodeid = 2\n" + NODES)
    assert (c.transport.bind, c.own_address) == ("127.0.0.2", ("127.0.0.2", 5405))


def test_several_nodes_on_one_host_need_nodeid(tmp_path: Path) -> None:
    shared = """
[[node]]
nodeid = 1
addr = "127.0.0.1:7001"
[[node]]
nodeid = 2
addr = "127.0.0.1:7002"
"""
    message = refused(tmp_path, '[transport]\nbind = "127.0.0.1"\n' + shared)
    assert message == "totem.nodeid: required: nodes 1, 2 share the bind address 127.0.0.1"
    c = load(tmp_path, '[totem]\nnodeid = 2\n[transport]\nbind = "127.0.0.1"\n' + shared)
    assert c.own_address == ("127.0.0.1", 7002)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NODES, "totem.nodeid: required when transport.bind is not set"),
        (
            '[transport]\nbind = "127.0.0.7"\n' + NODES,
            "transport.bind: no [[node]] has the address 127.0.0.7; add one or set totem.nodeid",
        ),
        ("[totem]\nnodeid = 3\n" + NODES, "totem.nodeid: 3 is not in the [[node]] list"),
        (
            '[totem]\nnodeid = 1\n[transport]\nbind = "127.0.0.2"\n' + NODES,
            "transport.bind: 127.0.0.2 is not node 1's address 127.0.0.1: "
            "peers know a processor by the address it sends from",
        ),
        ('[transport]\nbind = "127.0.0.1"\n', "node: at least one [[node]] table is required"),
        (
            '[transport]\nbind = "127.0.0.1"\n[node]\nnodeid = 1\naddr = "127.0.0.1"\n',
            "node: must be an array of tables: [[node]] ...",
        ),
    ],
)
def test_own_node_refusals(tmp_path: Path, text: str, expected: str) -> None:
    assert refused(tmp_path, text) == expected


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        ("bogus", "x = 1", "bogus: unknown section (known: totem, transport, node, ipc, "),
        ("totem", "tokken = 1000", "totem.tokken: unknown key (known here: nodeid, token, "),
        ("ipc", "sockett = 'x'", "ipc.sockett: unknown key (known here: socket, "),
        ("crypto", "key = 'x'", "crypto.key: unknown key (known here: cipher, key_file)"),
        ("logging", "lvl = 'x'", "logging.lvl: unknown key (known here: level, file)"),
        ("trace", "file = 'x'", "trace.file: unknown key (known here: path)"),
        ("state", "path = 'x'", "state.path: unknown key (known here: dir)"),
        ("totem", "token = 'fast'", "totem.token: must be a number, got a string"),
        ("totem", "token = true", "totem.token: must be a number, got a boolean"),
        ("totem", "token = nan", "totem.token: must be a finite number, got nan"),
        ("totem", "token = -5", "totem.token: must not be negative, got -5"),
        ("totem", "window_size = 1.5", "totem.window_size: must be an integer, got a number"),
        ("totem", "nodeid = 0", "totem.nodeid: must be 1..4294967295, got 0"),
        ("totem", "cluster_name = 5", "totem.cluster_name: must be a string, got an integer"),
        ("totem", "cluster_name = ''", "totem.cluster_name: cluster_name must not be empty"),
        ("totem", "token = 10", "totem.token: token must be at least 30 ms, got 10.0"),
        (
            "totem",
            "hold = 400",
            "totem.hold: hold must be below token_retransmit",
        ),
        (
            "totem",
            "token_retransmit_min = 300",
            "totem.token_retransmit_min: token_retransmit_min must be positive and at most "
            "token_retransmit",
        ),
        (
            "totem",
            "token_copies_on_loss = 0",
            "totem.token_copies_on_loss: token_copies_on_loss must be 1..4",
        ),
        (
            "totem",
            "max_messages = 80",
            "totem.max_messages: need 1 <= max_messages <= window_size",
        ),
        (
            "totem",
            "window_size = 10",
            "totem.window_size: need 1 <= max_messages <= window_size",
        ),
        ("transport", "netmtu = 500", "transport.netmtu: must be 576..65507, got 500"),
        ("transport", "port = 0", "transport.port: must be 1..65535, got 0"),
        ("transport", "port = 70000", "transport.port: must be 1..65535, got 70000"),
        ("transport", "ttl = 256", "transport.ttl: must be 0..255, got 256"),
        ("transport", "rcvbuf = 10", "transport.rcvbuf: must be 4096..1073741824, got 10"),
        ("transport", "mode = 'tcp'", 'transport.mode: must be one of "udpu", "udp", got "tcp"'),
        (
            "transport",
            "mode = 'udp'",
            'transport.mcast_addr: required in "udp" mode (e.g. "239.192.0.1")',
        ),
        (
            "transport",
            "mcast_addr = '10.1.1.1'",
            'transport.mcast_addr: "10.1.1.1" is not a multicast address (224.0.0.0/4)',
        ),
        (
            "ipc",
            "allowed_uids = [1, 'root']",
            "ipc.allowed_uids: must be a list of ids 0..4294967295, got 'root'",
        ),
        ("ipc", "allowed_gids = 5", "ipc.allowed_gids: must be a list of integers, got an integer"),
        ("ipc", "send_window_bytes = 100", "ipc.send_window_bytes"),
        ("ipc", "reader_hold_ms = -1", "ipc.reader_hold_ms"),
        ("ipc", "reader_hold_ms = 60001", "ipc.reader_hold_ms"),
        (
            "ipc",
            "client_queue_bytes = 100000",
            "ipc.client_queue_bytes: must hold one largest message: at least "
            "totem.max_message_size (1048576), got 100000",
        ),
        (
            "crypto",
            "cipher = 'aes256-gcm'",
            'crypto.cipher: must be one of "none", "chacha20-poly1305", "aes-256-gcm", '
            'got "aes256-gcm"',
        ),
        ("crypto", "cipher = ''", 'crypto.cipher: must be one of "none"'),
        ("crypto", "cipher = 1", "crypto.cipher: must be a string"),
        (
            "logging",
            "level = 'loud'",
            'logging.level: must be one of "debug", "info", "warning", "error", got "loud"',
        ),
        ("state", "dir = ''", "state.dir: must not be empty"),
        ("ipc", "socket = ''", "ipc.socket: must not be empty"),
        ("crypto", "key_file = ''", "crypto.key_file: must not be empty"),
        ("trace", 'path = "a\\u0000b"', "trace.path: must not contain a NUL character"),
        ("trace", "path = 3", "trace.path: must be a string, got an integer"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    tmp_path: Path, section: str, line: str, expected: str
) -> None:
    text = ""
    for name in ("totem", "transport", "ipc", "crypto", "logging", "trace", "state", "bogus"):
        if name in ("totem", "transport", section):
            text += f"[{name}]\n"
            text += "nodeid = 1\n" if name == "totem" and "nodeid" not in line else ""
            text += line + "\n" if name == section else ""
    message = refused(tmp_path, text + NODES)
    assert message.startswith(expected), message


def test_a_section_must_be_a_table(tmp_path: Path) -> None:
    assert refused(tmp_path, "totem = 3\n" + NODES) == "totem: must be a table, got an integer"


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (
            [(1, "127.0.0.1"), (1, "127.0.0.2")],
            "node[2].nodeid: 1 is already node[1]'s id",
        ),
        (
            [(1, "127.0.0.1"), (2, "127.0.0.1:5405")],
            "node[2].addr: 127.0.0.1:5405 is already node[1]'s address",
        ),
        (
            [(1, "127.0.0.1"), (2, "300.0.0.1")],
            'node[2].addr: "300.0.0.1" is not an IPv4 address like 192.0.2.1 '
            "(names are not resolved)",
        ),
        (
            [(1, "127.0.0.1"), (2, "example.com")],
            'node[2].addr: "example.com" is not an IPv4 address',
        ),
        ([(1, "127.0.0.1"), (2, "127.0.0.2:0")], 'node[2].addr: port in "127.0.0.2:0" must be'),
        ([(1, "127.0.0.1"), (2, "127.0.0.2:x")], 'node[2].addr: port in "127.0.0.2:x" must be'),
        ([(1, "127.0.0.1"), (2, "239.1.1.1")], 'node[2].addr: "239.1.1.1" is not a unicast'),
        ([(1, "127.0.0.1"), (2, "0.0.0.0")], 'node[2].addr: "0.0.0.0" is not a unicast'),
        ([(1, "127.0.0.1"), (0, "127.0.0.2")], "node[2].nodeid: must be 1..4294967295, got 0"),
    ],
)
def test_bad_node_lists(tmp_path: Path, nodes: list[tuple[int, str]], expected: str) -> None:
    text = '[transport]\nbind = "127.0.0.1"\n'
    text += "".join(f'[[node]]\nnodeid = {i}\naddr = "{a}"\n' for i, a in nodes)
    message = refused(tmp_path, text)
    assert message.startswith(expected), message


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('nodeid = 3\naddr = "127.0.0.3"\nweight = 2\n', "node[3].weight: unknown key"),
        ('addr = "127.0.0.3"\n', "node[3].nodeid: required"),
        ("nodeid = 3\n", "node[3].addr: required"),
    ],
)
def test_bad_node_tables(tmp_path: Path, table: str, expected: str) -> None:
    message = refused(tmp_path, MINIMAL + "[[node]]\n" + table)
    assert message.startswith(expected), message


def test_bind_must_be_one_host(tmp_path: Path) -> None:
    message = refused(tmp_path, '[transport]\nbind = "0.0.0.0"\n' + NODES)
    assert message == 'transport.bind: "0.0.0.0" is not a unicast address of one host'


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message = refused(tmp_path, "[totem]\ntoken = \n")
    assert message.startswith("line 2, column 9: TOML syntax: "), message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"missing\.toml: file: cannot read: No such file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "evs.toml").write_bytes(b"[totem]\ncluster_name = '\xff'\n")
    with pytest.raises(ConfigFileError, match=r"evs\.toml: file: not UTF-8 text \(byte 24\)"):
        load_config(tmp_path / "evs.toml")


def test_error_carries_its_parts(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        load(tmp_path, "[transport]\nport = 0\n")
    assert info.value.key == "transport.port"
    assert info.value.reason == "must be 1..65535, got 0"
    assert info.value.file == str(tmp_path / "evs.toml")


# ------------------------------------------------------------------------------ rendering


def test_render_then_load_a_one_host_cluster(tmp_path: Path) -> None:
    nodes = {n: ("127.0.0.1", 7000 + n) for n in (1, 2, 3)}
    for nodeid, address in nodes.items():
        text = render_config(
            nodeid,
            nodes,
            socket=tmp_path / f"n{nodeid}.sock",
            state_dir=tmp_path / f"n{nodeid}",
            trace_path=tmp_path / f"n{nodeid}.jsonl",
            port=7001,
            token=300,
            key_file=tmp_path / "authkey",
        )
        c = load(tmp_path, text)
        assert c.nodeid == nodeid
        assert c.node_addresses() == nodes
        assert c.own_address == address
        assert c.totem_config().token == 300
        assert c.ipc.socket == tmp_path / f"n{nodeid}.sock"
        assert c.state_dir == tmp_path / f"n{nodeid}"
        assert c.trace_path == tmp_path / f"n{nodeid}.jsonl"
        assert c.crypto.cipher == "chacha20-poly1305"
        assert c.crypto.key_file == tmp_path / "authkey"
    assert 'addr = "127.0.0.1"\n' in text  # the node on the default port: bare host


def test_render_then_load_multicast_mode(tmp_path: Path) -> None:
    nodes = {1: ("127.0.0.1", 5405), 2: ("127.0.0.2", 5405)}
    text = render_config(
        2,
        nodes,
        socket="s.sock",
        state_dir="state",
        mode="udp",
        mcast_addr="239.192.7.7",
        log_level="debug",
        log_file="evs.log",
        totem={"window_size": 50, "max_messages": 17},
        cipher="aes-256-gcm",
        key_file="k",
    )
    c = load(tmp_path, text)
    assert (c.crypto.cipher, c.crypto.key_file) == ("aes-256-gcm", tmp_path / "k")
    assert (c.transport.mode, c.transport.mcast_addr) == ("udp", "239.192.7.7")
    assert (c.totem_config().window_size, c.totem_config().max_messages) == (50, 17)
    assert (c.logging.level, c.logging.file) == ("debug", tmp_path / "evs.log")
    assert c.trace_path is None
    assert c.state_dir == tmp_path / "state"


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    path=st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=20),
)
def test_render_escapes_any_string(
    tmp_path_factory: pytest.TempPathFactory, name: str, path: str
) -> None:
    tmp = tmp_path_factory.mktemp("r")
    text = render_config(
        1, {1: ("127.0.0.1", 5405)}, socket="/s", state_dir="/st", cluster_name=name, cipher="none"
    )
    text = text.replace('path = ""', "path = " + render_config_string(path))
    c = load(tmp, text)
    assert c.cluster_name == name
    assert c.trace_path == tmp / path


def render_config_string(text: str) -> str:
    """The string escaping render_config uses, reached through its trace_path argument."""
    rendered = render_config(
        1, {1: ("127.0.0.1", 5405)}, socket="/s", state_dir="/s", trace_path=text, cipher="none"
    )
    line = next(ln for ln in rendered.split("\n") if ln.startswith("path = "))
    return line.removeprefix("path = ")


def test_render_needs_a_key_file_unless_cipher_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a key_file"):
        render_config(1, {1: ("127.0.0.1", 5405)}, socket="/s", state_dir="/s")
    text = render_config(1, {1: ("127.0.0.1", 5405)}, socket="/s", state_dir="/s", cipher="none")
    assert load(tmp_path, text).crypto.cipher == "none"


def test_config_is_frozen(tmp_path: Path) -> None:
    c = load(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.nodeid = 3  # type: ignore[misc]

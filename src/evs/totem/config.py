"""Totem timing and size constants (corosync's names and 1.x defaults, protocol.md section 6).

All times are milliseconds. Derived values (token_retransmit and its adaptive floor, hold,
consensus) follow the rules corosync documents, so changing ``token`` alone gives a consistent
set; every relation that the protocol depends on is checked in ``__post_init__`` with a
message naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evs.totem.codec import MCAST_HEADER_SIZE

__all__ = ["ConfigError", "TotemConfig"]

#: IPv4 + UDP headers; the datagram budget is netmtu minus these.
IP_UDP_OVERHEAD = 28
#: Room kept for the wire-security envelope (nonce, tag, key id) added below the core.
CRYPTO_RESERVE = 48
#: Default floor of the adaptive token retransmit timeout, ms (docs/benchmarks.md, "Random
#: loss: a loss-tolerant token").
TOKEN_RETRANSMIT_MIN_DEFAULT = 2.0


class ConfigError(ValueError):
    """A totem constant is out of range or inconsistent with another."""


@dataclass(frozen=True, slots=True)
class TotemConfig:
    """Protocol constants of one processor; every processor of a ring should agree."""

    token: float = 1000.0
    token_retransmits_before_loss_const: int = 4
    #: Re-send interval of the last token; None derives token / (retransmits + 0.2). On a busy
    #: ring this is only the ceiling of the adaptive timeout (``token_retransmit_min``).
    token_retransmit: float | None = None
    #: Floor of the adaptive token retransmit timeout. On a busy ring the last token sent is
    #: re-sent once it has been away about one observed rotation (smoothed rotation + 4 x its
    #: mean deviation), never sooner than this, never later than ``token_retransmit``, and
    #: each re-send of the same token doubles the wait (docs/protocol.md, "Token
    #: retransmission under loss").
    #: None derives min(2 ms, token_retransmit); equal to ``token_retransmit``: the fixed
    #: timer of corosync.
    token_retransmit_min: float | None = None
    #: How long the representative holds the token on an idle ring; None derives it.
    hold: float | None = None
    #: Copies of the ORF token sent per hop while the ring shows loss (one of the last
    #: ``ordering.LOSS_MEMORY_VISITS`` visits saw retransmission requests on the token or
    #: added some): under random loss a token is then lost only if every copy is, and the
    #: successor drops the extra copies by token_seq. 1: one copy, as corosync.
    token_copies_on_loss: int = 2
    join: float = 50.0
    send_join: float = 0.0
    #: None derives 1.2 x token.
    consensus: float | None = None
    merge: float = 200.0
    #: GATHER: a processor that sent no JOIN at all for this long is failed at once, rather
    #: than after the whole ``consensus`` timeout (0 disables). Live processors answer a JOIN
    #: within a few ``join`` intervals, so this shortens failover without blaming them.
    silent_timeout: float = 200.0
    #: Re-check interval of a downed network interface (used by the executive, not the core).
    downcheck: float = 1000.0
    fail_recv_const: int = 2500
    seqno_unchanged_const: int = 30
    #: Packets one token rotation may carry, ring-wide. 70 is the largest window whose burst
    #: fits twice in Linux's default socket receive buffer (2 x 70 x 1500 <= 212,992 bytes,
    #: net.core.rmem_default), so a receiver needs no tuning to absorb it; corosync's 50 carries
    #: 30 % less (docs/benchmarks.md, "Ring load").
    window_size: int = 70
    #: Packets one processor may send per token visit: a third of the window, as corosync's
    #: 17 of 50, so three senders fill a rotation and none takes it while others wait. (A lone
    #: sender of large messages may use the whole window: docs/protocol.md.)
    max_messages: int = 24
    miss_count_const: int = 5
    #: An OPERATIONAL visit of a received token that sends at least this many new packets
    #: forwards the token ahead of them (0: never), so the next member can pass it on while the
    #: packets are still on their way (an accelerated ring, as Spread's; docs/protocol.md "The
    #: token leaves ahead of a busy visit's packets"). Smaller visits keep the token last,
    #: which suits low load.
    token_ahead_min: int = 4
    #: Slots of the sort queue: how far the ring may run ahead of the slowest member.
    sort_queue_slots: int = 16384
    netmtu: int = 1500
    max_message_size: int = 1 << 20
    #: Bytes of application messages one processor may have queued before TryAgain. Queued
    #: bytes are latency the ring must carry: 2 MiB per processor on a 16-processor ring
    #: drained in about 11 s after a partition healed (8 MiB took 29 s), and a saturating
    #: sender's messages waited 0.87 s at 64 bytes against 0.55 s with 1 MiB, for the same
    #: throughput (docs/benchmarks.md, "A smaller send queue"). At least max_message_size.
    queue_bytes_max: int = 1 << 20
    #: Messages one processor may have queued before TryAgain, whatever their size: small
    #: messages fill ``queue_bytes_max`` only at tens of thousands, a wait of a third of a
    #: second at 64 bytes; 4096 is still a dozen visits' worth (docs/benchmarks.md, "A smaller
    #: send queue").
    queue_messages_max: int = 4096
    cluster_name: str = "evs"
    _derived: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def need(ok: bool, why: str) -> None:
            if not ok:
                raise ConfigError(why)

        need(self.token >= 30, f"token must be at least 30 ms, got {self.token}")
        need(
            1 <= self.token_retransmits_before_loss_const <= 100,
            "token_retransmits_before_loss_const must be 1..100",
        )
        retransmit = self.token_retransmit
        if retransmit is None:
            retransmit = self.token / (self.token_retransmits_before_loss_const + 0.2)
        retransmit_min = self.token_retransmit_min
        if retransmit_min is None:
            retransmit_min = min(TOKEN_RETRANSMIT_MIN_DEFAULT, retransmit)
        hold = self.hold if self.hold is not None else max(retransmit * 0.8 - 10.0, 1.0)
        consensus = self.consensus if self.consensus is not None else 1.2 * self.token
        need(0 < retransmit < self.token, "token_retransmit must be below token")
        need(
            0 < retransmit_min <= retransmit,
            "token_retransmit_min must be positive and at most token_retransmit",
        )
        need(0 < hold < retransmit, "hold must be below token_retransmit")
        need(1 <= self.token_copies_on_loss <= 4, "token_copies_on_loss must be 1..4")
        need(self.join > 0, "join must be positive")
        need(consensus >= self.join, "consensus must be at least join")
        need(self.send_join >= 0, "send_join must not be negative")
        need(self.merge > 0 and self.downcheck > 0, "merge and downcheck must be positive")
        need(
            self.silent_timeout == 0 or self.silent_timeout >= self.send_join + 2 * self.join,
            "silent_timeout must be 0 (off) or at least send_join + 2 x join, or live "
            "processors still spreading their first JOIN would be failed",
        )
        need(self.fail_recv_const >= 1, "fail_recv_const must be at least 1")
        need(self.seqno_unchanged_const >= 1, "seqno_unchanged_const must be at least 1")
        need(1 <= self.max_messages <= self.window_size, "need 1 <= max_messages <= window_size")
        need(self.miss_count_const >= 1, "miss_count_const must be at least 1")
        need(self.token_ahead_min >= 0, "token_ahead_min must be 0 (never) or more")
        need(
            self.sort_queue_slots > 2 * self.window_size,
            "sort_queue_slots must exceed twice window_size",
        )
        need(576 <= self.netmtu <= 65507, f"netmtu must be 576..65507, got {self.netmtu}")
        need(self.max_message_size >= 1, "max_message_size must be positive")
        need(
            self.queue_bytes_max >= self.max_message_size,
            "queue_bytes_max must be at least max_message_size",
        )
        need(self.queue_messages_max >= 1, "queue_messages_max must be at least 1")
        need(bool(self.cluster_name), "cluster_name must not be empty")
        self._derived.update(
            token_retransmit=retransmit,
            token_retransmit_min=retransmit_min,
            hold=hold,
            consensus=consensus,
        )

    @property
    def token_retransmit_ms(self) -> float:
        return self._derived["token_retransmit"]

    @property
    def token_retransmit_min_ms(self) -> float:
        return self._derived["token_retransmit_min"]

    @property
    def hold_ms(self) -> float:
        return self._derived["hold"]

    @property
    def consensus_ms(self) -> float:
        return self._derived["consensus"]

    @property
    def payload_max(self) -> int:
        """Largest totem payload: room for the MCAST header twice (recovery encapsulation)."""
        return self.netmtu - IP_UDP_OVERHEAD - CRYPTO_RESERVE - 2 * MCAST_HEADER_SIZE

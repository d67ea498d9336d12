"""Body of the segmentation fall-back test, run inside ``unshare -n`` by test_udp_offload.py.

The caller has set loopback's MTU to 1500. Node 1 sends a corked run of 3000-byte datagrams
(above the link's MTU, as with a netmtu of 9000 on 1500-byte links): the kernel refuses to
segment it, the transport sends each datagram alone (the kernel fragments them) and stops
trying. Prints what arrived and node 1's counters as JSON.
"""

from __future__ import annotations

import asyncio
import json

from udp_helpers import Inbox, opened

from evs.daemon.udp import UdpTransport

PORT = 5405
NODES = {1: ("127.0.0.1", PORT), 2: ("127.0.0.2", PORT)}


async def main() -> dict[str, object]:
    inboxes = {n: Inbox() for n in NODES}
    transports = {
        n: UdpTransport("udpu", host, PORT, NODES, n, inboxes[n], netmtu=9000)
        for n, (host, _) in NODES.items()
    }
    sent = [bytes([i]) * 3000 for i in range(5)] + [bytes([9]) * 100, bytes([10]) * 100]
    with opened(list(transports.values())):
        t1 = transports[1]
        t1.cork()
        for data in sent[:5]:
            t1.send(2, data)
        t1.flush()
        before = t1.counters["tx_gso_sends"]
        t1.cork()
        for data in sent[5:]:  # small enough to segment, but the path said no once
            t1.send(2, data)
        t1.flush()
        got = await inboxes[2].wait_count(len(sent))
        return {
            "same": [d for _, d in got] == sent,
            "tx_gso_off": t1.counters["tx_gso_off"],
            "tx_gso_sends": before,
            "small_runs_after": t1.counters["tx_gso_sends"] - before,
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

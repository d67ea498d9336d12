"""Body of the "udp" (multicast) transport test, run inside ``unshare -n`` by test_udp.py.

The caller has set up loopback for multicast. Four transports: nodes 1..3 on 127.0.0.1..3 and
node 4, a second executive on 127.0.0.1 with its own unicast port. Node 1 multicasts once;
node 4 unicasts the "token" to node 1; node 3 multicasts a corked run (one segmented send).
Prints what each received and its counters as JSON.
"""

from __future__ import annotations

import asyncio
import json
import socket

from udp_helpers import Inbox, opened

from evs.daemon.udp import BROADCAST, UdpTransport

PORT = 5405
GROUP = "239.192.0.1"
NODES = {
    1: ("127.0.0.1", PORT),
    2: ("127.0.0.2", PORT),
    3: ("127.0.0.3", PORT),
    4: ("127.0.0.1", PORT + 1),
}


async def main() -> dict[str, object]:
    inboxes = {n: Inbox() for n in NODES}
    transports = {
        n: UdpTransport("udp", host, PORT, NODES, n, inboxes[n], mcast_addr=GROUP)
        for n, (host, _) in NODES.items()
    }
    with opened(list(transports.values())):
        t1 = transports[1]
        t1.send(BROADCAST, b"hello")
        for n in (2, 3, 4):
            await inboxes[n].wait_count(1)
        transports[4].send(1, b"token")
        await inboxes[1].wait_count(1)
        # Node 1's own copy arrives on its multicast socket; a marker multicast by node 2
        # after it proves it was read (one socket, FIFO).
        transports[2].send(BROADCAST, b"marker")
        await inboxes[3].wait_count(2)
        await inboxes[1].wait_count(2)
        # A corked run multicast by node 3 (one segmented send): every member gets the same
        # datagrams in order, its own copy is ignored as before.
        run = [bytes([i]) * 1000 for i in range(3)] + [b"tail"]
        t3 = transports[3]
        before = {n: len(inboxes[n].datagrams) for n in (1, 2, 4)}
        t3.cork()
        for data in run:
            t3.send(BROADCAST, data)
        t3.flush()
        runs_received = {}
        for n in (1, 2, 4):
            got = await inboxes[n].wait_count(before[n] + len(run))
            runs_received[str(n)] = [d for s, d in got if s == 3] == run
        assert t1._unicast is not None
        ttl = t1._unicast.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL)
        loop = t1._unicast.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP)
        return {
            "received": {
                str(n): [[s, d.decode()] for s, d in inbox.datagrams if d != b"marker" and s != 3]
                for n, inbox in inboxes.items()
            },
            "runs_received": runs_received,
            "counters": {str(n): t.counters for n, t in transports.items()},
            "ttl": ttl,
            "loop": loop,
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

"""Peer-to-peer layer of the relayer: a libp2p host in its own trio thread, split by concern.

- ``host``: ``P2PHost``, the asyncio-facing facade (start, stop, connect, publish,
  send, send_all, set_allowed, connected_peers, wait_for_peers, traffic, dropped);
- ``bridge``: the trio thread and every crossing between it and asyncio; the only
  module that knows both event loops;
- ``runtime``: the libp2p stack served in that thread, brought up and torn down in order;
- ``admission``: the committee gate and the one message check both transports run;
- ``gossip`` and ``direct``: the two transports;
- ``stack``: secure transport choices and process-wide py-libp2p tuning;
- ``identity``: Ethereum keys bound to peer ids; ``errors``: the exception tree.

Trio never leaks out of this package. Submodules are imported explicitly because
importing libp2p costs over a second.
"""

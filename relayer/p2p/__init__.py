"""Peer-to-peer layer of the relayer: a libp2p gossipsub host in its own trio thread.

Trio never leaks out of this package. ``relayer.p2p.host.P2PHost`` is the asyncio
facing API; ``relayer.p2p.identity`` binds Ethereum keys to peer ids;
``relayer.p2p.errors`` holds the exception tree. Submodules are imported
explicitly because importing libp2p costs over a second.
"""

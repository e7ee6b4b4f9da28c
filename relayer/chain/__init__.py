"""Everything the relayer needs from the chain: report codec, contract client, local anvil.

``codec`` is pure and on the hot path; ``oracle`` talks to QuorumOracle / FeedProxy over
JSON-RPC; ``anvil`` runs a local node for tests and devnets. Errors: ``errors.ChainError``.
"""

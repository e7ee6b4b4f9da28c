from tests.relayer.protocol.conftest import committee, keys

__all__ = ["committee", "keys"]

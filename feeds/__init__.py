"""Data sources: venue adapters, their registry, the feed cache and the venue simulator.

Entry points for the node: ``feeds.registry.make_source``, ``feeds.poller.FeedCache``,
``feeds.base.SourceReading``; every error is under ``feeds.errors.FeedsError``.
Never imports ``relayer``.
"""

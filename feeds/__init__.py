"""Data sources: venue adapters, their registry, the feed catalog, the feed cache and the venue simulator.

Entry points for the node: ``feeds.registry.make_source``, ``feeds.catalog.load_catalog``
(``FeedDefinition``), ``feeds.poller.FeedCache`` (``poll_once``, ``readings``,
``aggregate``), ``feeds.base.SourceReading``; risk-factor kinds and units in
``feeds.kinds``; every error is under ``feeds.errors.FeedsError``. Never imports ``relayer``.
"""

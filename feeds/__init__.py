"""Data sources: venue adapters, their registry, the feed catalog, the feed cache and the simulated venues.

Entry points for the node: ``feeds.registry.make_source``, ``feeds.catalog.load_catalog``
(``FeedDefinition``), ``feeds.poller.FeedCache`` (``poll_once``, ``readings``,
``aggregate``), ``feeds.base.SourceReading``; risk-factor kinds and units in
``feeds.kinds``; every error is under ``feeds.errors.FeedsError``. A source is built
from ``feeds.base`` (the contract and value checks), ``feeds.http``, ``feeds.body``
(the body walker) and ``feeds.computed``; a simulated venue from
``feeds.simulated.venue`` over ``feeds.market``, served by ``feeds.simulator``.
Never imports ``relayer``.
"""

"""A third-party relayer venue package: a source and its simulated venue, both through entry points.

Installed by tests/feeds/test_feeds_plugin_package.py and tests/feeds/test_feeds_plugin_devnet.py.
"""

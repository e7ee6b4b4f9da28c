"""A third-party relayer source package, installed by tests/feeds/test_feeds_plugin_package.py."""

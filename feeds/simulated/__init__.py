"""Simulated venues, one file per venue; registered through ``relayer.simulated_venues`` entry points.

Each quotes the one seeded market (:mod:`feeds.market`) in its venue's real response
format; :mod:`feeds.simulator` serves them all on one port.
"""

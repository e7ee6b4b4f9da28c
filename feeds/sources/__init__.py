"""Venue adapters, one file per venue; registered through ``relayer.sources`` entry points."""

"""Kemnaker contact hub: one ticket per citizen and matter, whatever the channel."""

__version__ = "0.1.0"

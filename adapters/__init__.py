"""Ports to infrastructure that is not a channel. Only this package talks to Redis."""

"""Steady Talk backend: audio front-end, lip-sync engine, adaptive smoothing training,
ZeroMQ server and the ``steadytalk`` command line."""

from steadytalk_shared import __version__

__all__ = ["__version__"]

"""Serving: the ZeroMQ backend (socket loop, request checks, render sessions), CURVE keys and
batch renders (local or on Ray).

On top: may import every room below it (``render``, ``avatar``, ``face``, ``lipsync``); not ``cli``.
"""

"""Serving: the ZeroMQ backend (socket loop, request checks, render sessions, talking
portraits), CURVE keys and batch renders (local or on Ray).

On top: may import every room below it (``render``, ``portrait``, ``avatar``, ``face``,
``lipsync``); not ``cli`` or ``evaluation``.
"""

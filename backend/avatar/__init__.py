"""Avatars: video I/O (PyAV) and ``prepare``, which turns a reference video into an avatar folder.

May import ``face`` and ``lipsync`` (and ``steadytalk_shared``); never ``render``, ``service``,
``evaluation`` or ``cli``.
"""

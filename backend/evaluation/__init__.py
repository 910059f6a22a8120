"""Evaluation reports: lip-sync (closure, open vowel, rest, curve stability), tracking and the
renderer on held-out clips.

Beside ``service``: may import ``render``, ``avatar``, ``face`` and ``lipsync``; not ``service`` or ``cli``.
"""

"""Lip-sync: audio in, smoothed ARKit curves out (audio front-end, phonetics, prosody, visemes,
the engine, the adaptive smoother's torch network and its training).

Imports only ``steadytalk_shared`` and the top-level ``errors``/``atomic``; never another room.
"""

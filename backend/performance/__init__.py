"""The whole face from audio: blinks, gaze, brows and head motion as small, explainable,
seeded models learned from tracked real video (``train``), run by the lip-sync engine.

Imports only ``steadytalk_shared`` and the top-level helpers (numpy only at run time): the
lip-sync engine sits above it and hands it the speech it heard (phones, energy, pitch), and
``evaluation`` tracks the videos the models are fitted on.
"""

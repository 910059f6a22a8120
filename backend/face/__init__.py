"""The face: the canonical face model (build, shape sheets), mediapipe landmarks, fitting a
person's identity, pose and ARKit coefficients, and the face-shape pass rasterizer.

Imports only ``steadytalk_shared`` and the top-level helpers; never another room.
"""

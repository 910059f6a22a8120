"""Talking portrait from one picture, no training: find and fit the face, texture the fitted
mesh with the picture itself, deform it per frame with the lip-sync curves, warp the rest of
the picture around it (MakeItTalk's Delaunay warp anchored on the face boundary and the image
border), and paint what the picture does not show (the mouth's inside, the eyes under the lids).

May import ``face``, ``lipsync`` and ``avatar`` (for video writing) and ``steadytalk_shared``;
never ``render``, ``service``, ``evaluation`` or ``cli``.
"""

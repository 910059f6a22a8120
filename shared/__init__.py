"""Steady Talk shared layer: numpy-only code used by both the backend and the Blender add-on.

No torch, no bpy. Imports inside this package are relative, so it works both as the
installed ``steadytalk_shared`` package and vendored inside the Blender extension.
"""

__version__ = "0.1.0"

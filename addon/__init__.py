"""The Steady Talk Blender add-on: registration of its settings, operators and panel.

The repository root is the extension package (``blender_manifest.toml`` and ``__init__.py``
there); ``addon/`` and ``shared/`` are its subpackages, so the add-on imports ``..shared``.
"""

from __future__ import annotations

import bpy

from . import backend_link, batch, operators, portrait, portrait_video, preferences, properties, rig_operators, ui

CLASSES = (
    *preferences.CLASSES,
    *operators.CLASSES,
    *portrait.CLASSES,
    *portrait_video.CLASSES,
    *rig_operators.CLASSES,
    *batch.CLASSES,
    *ui.CLASSES,
)


def register() -> None:
    properties.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_mesh_add.append(ui.menu_add_face_rig)
    backend_link.set_redraw(operators.redraw_panels)


def unregister() -> None:
    backend_link.cancel_current()
    if bpy.app.timers.is_registered(backend_link.tick):
        bpy.app.timers.unregister(backend_link.tick)
    backend_link.stop_local_backend()
    backend_link.set_redraw(None)
    bpy.types.VIEW3D_MT_mesh_add.remove(ui.menu_add_face_rig)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()

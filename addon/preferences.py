"""Add-on preferences: where the backend is, and whether Blender starts one itself."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from . import backend_link

# The extension's package (e.g. "bl_ext.user_default.steadytalk"): this module is <package>.addon.preferences.
PACKAGE = __package__.rpartition(".")[0]


class STEADYTALK_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    endpoint: StringProperty(
        name="Backend Address",
        default="tcp://127.0.0.1:5757",
        description="ZeroMQ address of the Steady Talk backend ('steadytalk serve'); loopback by default",
    )
    timeout: FloatProperty(
        name="Timeout",
        default=30.0,
        min=1.0,
        max=3600.0,
        unit="TIME_ABSOLUTE",
        description="Longest silence from the backend before giving up (progress messages reset it)",
    )
    auto_start: BoolProperty(
        name="Start a Local Backend",
        default=False,
        description="When nothing answers on a loopback address, start the backend here and stop it with Blender",
    )
    start_command: StringProperty(
        name="Command",
        default="steadytalk",
        description="The steadytalk executable, or a Python interpreter that has the backend installed",
    )
    connection_status: StringProperty(name="Status", default="")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "endpoint")
        layout.prop(self, "timeout")
        row = layout.row()
        row.prop(self, "auto_start")
        sub = row.row()
        sub.active = self.auto_start
        sub.prop(self, "start_command", text="")
        row = layout.row()
        row.operator("steadytalk.test_connection", icon="LINKED")
        local = backend_link.local_backend()
        if local is not None and local.running():
            row.operator("steadytalk.stop_local_backend", icon="CANCEL")
        if self.connection_status:
            layout.label(text=self.connection_status)
        if not bpy.app.online_access and not backend_link.is_loopback(self.endpoint):
            layout.label(text="Online access is off: only a backend on this computer can be used.", icon="ERROR")


def get(context: bpy.types.Context | None = None) -> STEADYTALK_AP_preferences | None:
    addon = (context or bpy.context).preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def connection(context: bpy.types.Context | None = None) -> backend_link.Connection:
    """A snapshot of the preferences for a worker thread (defaults when not registered as an add-on)."""
    prefs = get(context)
    if prefs is None:
        return backend_link.Connection(endpoint="tcp://127.0.0.1:5757")
    backend_link.check_endpoint(prefs.endpoint, bpy.app.online_access)
    return backend_link.Connection(
        endpoint=prefs.endpoint,
        timeout=prefs.timeout,
        auto_start=prefs.auto_start,
        start_command=prefs.start_command,
        avatars=avatar_folders(),
    )


def avatar_folders() -> tuple[str, ...]:
    """Folders holding the avatars loaded in this file: a local backend started by the add-on
    serves them (``steadytalk serve --avatars``)."""
    folders = {str(Path(obj["steadytalk_avatar"]).parent) for obj in bpy.data.objects if obj.get("steadytalk_avatar")}
    return tuple(sorted(folders))


CLASSES = (STEADYTALK_AP_preferences,)

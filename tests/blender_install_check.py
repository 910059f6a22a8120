"""Run by tests/test_blender_extension.py in a fresh interpreter (BLENDER_USER_RESOURCES set):
install the built extension zip the way Blender's "Install from Disk" does, enable it, and
lip-sync the demo clip onto a new face rig against the backend at ENDPOINT.

    python blender_install_check.py ZIP ENDPOINT WAV
"""

import json
import sys
from pathlib import Path

import bpy

zip_path, endpoint, wav = sys.argv[-3:]
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True) == {
    "FINISHED"
}
package = "bl_ext.user_default.steadytalk"
assert package in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
prefs = bpy.context.preferences.addons[package].preferences
prefs.endpoint = endpoint
assert bpy.ops.steadytalk.add_face_rig() == {"FINISHED"}
rig = bpy.context.active_object
bpy.context.scene.steadytalk.audio_path = wav
assert bpy.ops.steadytalk.lipsync() == {"FINISHED"}
link = sys.modules[f"{package}.addon.backend_link"]
link.wait(120)
site = Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
action = rig.steadytalk.result_action
print(
    json.dumps(
        {
            "message": link.last_message,
            "action": action.name if action else None,
            "fcurves": len(rig.data.shape_keys.animation_data.action.layers[0].strips[0].channelbags[0].fcurves)
            if action and hasattr(action, "layers")
            else (len(action.fcurves) if action else 0),
            "bundled_zmq": sorted(str(p.relative_to(site)) for p in site.glob("python*/site-packages/zmq")),
            "blender": bpy.app.version_string,
        }
    )
)

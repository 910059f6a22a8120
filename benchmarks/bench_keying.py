"""Blender time to apply a lip-sync result: mapping, keying and caching, in the ``bpy`` module.

    python benchmarks/bench_keying.py [--minutes 10] [--fps 30]

Target (the Blender extension issue): 10 minutes at 30 fps on 25+ channels keyed in at most 2 s
of Blender time after the curves arrive; the same on a 4-mesh character (head, teeth, tongue,
beard under one armature, as Ready Player Me splits them). Measured on ``lipsync.apply_result``,
the function the add-on runs on the main thread when the backend's answer arrives (the
character's plan with its empty-key check, the mapping, keying and caching): ARKit dense keys,
ARKit reduced Bezier keys (tolerance 0.01) and viseme rigs (Oculus, reduced), each the median of
3, and the re-smooth slider. The curves are the engine's for the demo sentence, repeated to the
length asked for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import extension_module, extension_package  # noqa: E402  (the extension's own import path)

from steadytalk_shared.face_model import FaceModel  # noqa: E402
from steadytalk_shared.mapping import PRESETS  # noqa: E402


def long_result(minutes: float, fps: float):
    from importlib import resources

    from steadytalk_backend.lipsync.engine import LipsyncEngine

    wav = Path(str(resources.files("steadytalk_backend.data") / "demo_speech.wav"))
    result = LipsyncEngine().run(wav, fps=fps)
    frames = int(minutes * 60 * fps)
    repeats = -(-frames // result.num_frames)
    result.raw = np.tile(result.raw, (repeats, 1))[:frames]
    result.smoothed = np.tile(result.smoothed, (repeats, 1))[:frames]
    result.sigma = np.tile(result.sigma, repeats)[:frames]
    result.duration = frames / fps
    return result


def viseme_rig(scene, preset_id: str, name: str = "visemes"):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for i, viseme in enumerate(PRESETS[preset_id].visemes):
        key = obj.shape_key_add(name=f"viseme_{viseme.name}")
        key.data[i % 3].co.z += 0.01  # a shape that moves a vertex (empty keys are not driven)
    obj.steadytalk.preset = preset_id
    return obj


def character(scene, make_mesh) -> bpy.types.Object:
    """Four meshes under one armature (head, teeth, tongue, beard); returns the head."""
    rig = bpy.data.objects.new(f"Rig {len(bpy.data.objects)}", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(rig)
    meshes = [make_mesh(name) for name in ("Head", "Teeth", "Tongue", "Beard")]
    for mesh in meshes:
        mesh.parent = rig
        mesh.modifiers.new("Armature", "ARMATURE").object = rig
    return meshes[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    result = long_result(args.minutes, args.fps)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    extension_package().register()
    lipsync = extension_module("lipsync")
    scene = bpy.context.scene
    model = FaceModel.load()
    create_face_rig = extension_module("rig").create_face_rig
    face = create_face_rig(scene.collection, model)
    print(f"bpy {bpy.app.version_string}: {args.minutes:g} min at {args.fps:g} fps ({result.num_frames} frames)")
    arkit_character = character(scene, lambda name: create_face_rig(scene.collection, model, name))
    oculus_character = character(scene, lambda name: viseme_rig(scene, "OCULUS", f"{name} visemes"))
    for label, obj, tolerance in (
        ("ARKit rig, 33 channels, dense keys", face, None),
        ("ARKit rig, 33 channels, reduced keys", face, 0.01),
        ("Oculus viseme rig, 15 visemes, reduced keys", viseme_rig(scene, "OCULUS"), 0.01),
        ("4-mesh ARKit character, dense keys", arkit_character, None),
        ("4-mesh ARKit character, reduced keys", arkit_character, 0.01),
        ("4-mesh Oculus character, reduced keys", oculus_character, 0.01),
    ):
        settings = lipsync.ApplySettings(obj.name, 1, "bench", None, False, False, tolerance)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            actions, _, plan = lipsync.apply_result(scene, result, settings)
            times.append(time.perf_counter() - started)
        keys = sum(len(fc.keyframe_points) for a in actions for fc in extension_module("keying").action_fcurves(a))
        meshes = len(plan.driven)
        print(f"  {label}: {np.median(times):.2f} s, {keys} keys on {meshes} mesh(es) (median of 3)")
    from steadytalk_shared.keyreduce import reduce_keys
    from steadytalk_shared.schema import CHANNELS

    for tolerance in (0.01, 0.03):
        kept = [len(reduce_keys(result.smoothed[:, c], tolerance).frames) for c in range(len(CHANNELS))]
        jaw = kept[CHANNELS.index("jawOpen")]
        print(
            f"  key reduction at tolerance {tolerance}: {sum(kept)} of {result.smoothed.size} keys "
            f"({sum(kept) / result.smoothed.size:.1%}); "
            f"jawOpen {jaw} of {result.num_frames} ({jaw / result.num_frames:.0%})"
        )
    for label, obj in (("ARKit rig", face), ("4-mesh ARKit character", arkit_character)):
        started = time.perf_counter()
        obj.steadytalk.smoothing_strength = 2.0
        elapsed = time.perf_counter() - started
        print(f"  re-smooth slider on the {label} (numpy smoother + reduced keys): {elapsed:.2f} s")


if __name__ == "__main__":
    main()

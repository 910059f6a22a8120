"""Package the Blender extension: fetch its wheels, validate the manifest, build the zips.

    python scripts/extension.py wheels              # pinned pyzmq/msgpack wheels into wheels/
    python scripts/extension.py validate            # Blender's own manifest check
    python scripts/extension.py build [--out DIR]   # one zip per platform (build/extension/)

The wheels are the ones ``blender_manifest.toml`` lists: CPython 3.11 (the Python of Blender
4.2-5.0) for linux-x64, windows-x64, macos-arm64 and macos-x64, checked against the SHA-256
pins below, so a build is reproducible and a tampered download is refused. Blender's
extension command (``blender_ext.py``) ships inside the ``bpy`` wheel; no Blender binary is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "blender_manifest.toml"

WHEEL_SHA256 = {
    "msgpack-1.2.4-cp311-cp311-macosx_10_9_x86_64.whl": (
        "1095b1ebcc8c9d3e70c51240b7160d8e9da66044e0a45c3ef8403d3a9ef0c5ad"
    ),
    "msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl": (
        "a4b47ec7422bef149223786a87df80067ac65bfc7c0565e5cf1dfbdc40acee50"
    ),
    "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl": (
        "a45ceb5f199d5e388f28b550ba881096a3740d4bda10e661d77f59d9a2e8187a"
    ),
    "msgpack-1.2.4-cp311-cp311-win_amd64.whl": "9db832747bd05834530189e564a3fe31e2617547dc1f3a005f835eafc2b8e048",
    "pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl": (
        "86fb4408797aabb54a31e147176ae0f2474d99f1715a36a4564089eca9ef9ce8"
    ),
    "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl": (
        "477b8ad30d66fc905c5388351e83b9ac25824b00e82c0d052b72ea6392636dfd"
    ),
    "pyzmq-27.3.0-cp311-cp311-win_amd64.whl": "df98c790f86b6aa2378b4bb94dec7b85b0adb195b880b41e429a4990aed2a8c9",
}


def manifest_wheels() -> list[Path]:
    manifest = tomllib.loads(MANIFEST.read_text())
    return [REPO / w for w in manifest.get("wheels", [])]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheels() -> None:
    """Download each listed wheel that is missing or does not match its pin (idempotent)."""
    for path in manifest_wheels():
        name = path.name
        if name not in WHEEL_SHA256:
            sys.exit(f"extension: {name} is listed in blender_manifest.toml but has no SHA-256 pin here")
        if path.is_file() and sha256(path) == WHEEL_SHA256[name]:
            continue
        distribution, version, python_tag, abi, platform = _wheel_tags(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        # One pip call per wheel with its exact tags: pip picks exactly this file.
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--python-version", python_tag.removeprefix("cp"), "--implementation", "cp", "--abi", abi,
                *(arg for tag in platform.split(".") for arg in ("--platform", tag)),
                "--dest", str(path.parent), f"{distribution}=={version}",
            ],
            check=True,
        )  # fmt: skip
        if not path.is_file() or sha256(path) != WHEEL_SHA256[name]:
            path.unlink(missing_ok=True)
            sys.exit(f"extension: downloaded {name} does not match its SHA-256 pin; refusing to use it")
    print(f"extension: {len(manifest_wheels())} wheels in {REPO / 'wheels'}")


def _wheel_tags(filename: str) -> tuple[str, str, str, str, str]:
    parts = filename.removesuffix(".whl").split("-")
    return parts[0], parts[1], parts[-3], parts[-2], parts[-1]


def blender_ext() -> Path:
    """blender_ext.py inside the installed bpy wheel."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        sys.exit("extension: the bpy module is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"extension: no blender_ext.py inside {Path(spec.origin).parent}")
    return found[-1]


def run_blender_ext(*args: str) -> None:
    done = subprocess.run([sys.executable, str(blender_ext()), *args])
    if done.returncode != 0:
        sys.exit(f"extension: Blender's extension command failed ({args[0]}); see its message above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("wheels", help="download the pinned wheels into wheels/")
    sub.add_parser("validate", help="check blender_manifest.toml and the files it names")
    build = sub.add_parser("build", help="build one zip per platform")
    build.add_argument("--out", type=Path, default=REPO / "build" / "extension")
    args = parser.parse_args()
    if args.command == "wheels":
        fetch_wheels()
    elif args.command == "validate":
        fetch_wheels()
        run_blender_ext("validate", str(REPO))
    else:
        fetch_wheels()
        args.out.mkdir(parents=True, exist_ok=True)
        run_blender_ext("build", "--source-dir", str(REPO), "--output-dir", str(args.out), "--split-platforms")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, pytest, then the Blender tests again on bpy
# 4.2 and 4.5. Tests that need ../shared/data skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# With no arguments, also the Blender tests on every other bpy set up by setup.sh (4.2, 4.5),
# against the backend of .venv.
if [ $# -eq 0 ]; then
    for venv in .venv-bpy*/; do
        [ -x "$venv/bin/python" ] || continue
        echo "== Blender tests with $("$venv/bin/python" -c 'import bpy; print("bpy", bpy.app.version_string)' 2>/dev/null)"
        STEADYTALK_BACKEND_PYTHON="$PWD/.venv/bin/python" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
            tests/test_blender_addon.py tests/test_blender_rig.py tests/test_blender_extension.py \
            tests/test_blender_character.py tests/test_blender_interchange.py tests/test_blender_batch.py \
            tests/test_blender_portrait.py tests/test_blender_face.py
    done
fi

#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Python 3.11: system packages, the virtual
# environment in .venv, torch 2.13.0, and this project (editable) with its dev tools.
# A second run finishes in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages. The Python wheels bring their own native libraries (libsndfile with MP3,
# libzmq, pocketsphinx); espeak-ng and sox make the project's own speech for the demo clip
# and for tests that synthesize fresh sentences.
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
    if [ "$sudo" = "none" ]; then
        echo "setup: please install ${missing[*]} (apt-get install ${missing[*]}); continuing without them" >&2
    else
        echo "setup: installing ${missing[*]} with apt-get"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

python=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: Python 3.11 is required (the Blender 4.2-5.0 Python); install python3.11 and run again" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $python"
    "$python" -m venv .venv
fi

# Reinstall only when the dependency list changed since the last successful set-up.
stamp=.venv/.steadytalk-setup
extras="${STEADYTALK_EXTRAS-dev,scale}"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/steadytalk ]; then
    main_ready=1
else
    main_ready=0
fi
if [ "$main_ready" = 0 ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first and pinned: here it resolves to a local CPU build; on a GPU box to the CUDA build.
    if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
        echo "setup: installing torch 2.13.0"
        .venv/bin/python -m pip install -q torch==2.13.0
    fi
    echo "setup: installing steadytalk and its dependencies"
    # setuptools announces every editable install with a warning box; it says nothing about
    # this project (every package and its data are declared in pyproject.toml), so hide it.
    # The [scale] extra (Ray, about 240 MB) too, so the Ray batch test runs; STEADYTALK_EXTRAS=dev leaves it out.
    PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$wanted" > "$stamp"
fi

# The add-on is also tested on Blender 4.2 LTS and 4.5 LTS: one bpy per environment, each with
# only what the extension bundles (pyzmq, msgpack) plus pytest. STEADYTALK_BLENDER_VERSIONS=""
# skips them (bpy 5.0 is in .venv already).
for version in ${STEADYTALK_BLENDER_VERSIONS-4.2.23 4.5.15}; do
    venv=".venv-bpy$(echo "$version" | cut -d. -f1,2 | tr -d .)"
    want="$version $(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ -f "$venv/.steadytalk-setup" ] && [ "$(cat "$venv/.steadytalk-setup")" = "$want" ]; then
        continue
    fi
    echo "setup: installing bpy $version in $venv"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "bpy==$version" pyzmq==27.3.0 msgpack==1.2.4 pytest
    PYTHONWARNINGS="ignore:Editable installation" "$venv/bin/python" -m pip install -q --no-deps -e .
    echo "$want" > "$venv/.steadytalk-setup"
done

# The wheels the extension bundles (pinned by SHA-256; downloads only what is missing).
.venv/bin/python scripts/extension.py wheels
echo "setup: done (.venv/bin/steadytalk)"

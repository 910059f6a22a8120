#!/usr/bin/env bash
# The main job: set up (idempotent), then lip-sync the bundled speech clip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/steadytalk demo --out demo_output

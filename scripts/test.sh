#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, then pytest. Tests that need ../shared/data
# skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

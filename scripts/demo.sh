#!/usr/bin/env bash
# The main job: install, then build a lab of network namespaces, probe it, tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/rawprobe demo "$@"

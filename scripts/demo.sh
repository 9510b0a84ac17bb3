#!/usr/bin/env bash
# The main job: install, then build a lab of network namespaces, probe it, tear it down.
set -euo pipefail
# Raw sockets and namespaces need root: as another user, go through sudo.
[ "$(id -u)" -eq 0 ] || exec sudo bash "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/rawprobe demo "$@"

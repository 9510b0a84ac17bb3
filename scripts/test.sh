#!/usr/bin/env bash
# The test command: install, then lint, type-check and run every test tier, the lab
# tier included (RAWPROBE_LAB=required: a lab that cannot be built fails the run).
# Needs root (raw sockets, network namespaces).
set -euo pipefail
# Raw sockets and namespaces need root: as another user, go through sudo.
[ "$(id -u)" -eq 0 ] || exec sudo bash "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/install.sh
export RAWPROBE_LAB=required
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/typecheck.sh
# The API reference site (mkdocs.yml): warnings fail it; offline, a few seconds.
.venv/bin/mkdocs build --strict --quiet
# The pytest script, not `python -m pytest`: the latter puts the repository root on
# sys.path, where ./rawprobe would shadow the installed package.
.venv/bin/pytest -p no:cacheprovider "$@"

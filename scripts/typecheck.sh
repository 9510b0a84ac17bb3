#!/usr/bin/env bash
# mypy --strict on the installed rawprobe package (every subpackage). Runs from a
# scratch directory so that ./rawprobe (the front-door folder alone) does not shadow
# the installed package, whose link tree maps probes/, transport/ and cli/ in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mypy=${MYPY:-$root/.venv/bin/mypy}
cd "$(mktemp -d)"
exec "$mypy" --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" "$@"

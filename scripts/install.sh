#!/usr/bin/env bash
# Install everything rawprobe needs on a fresh Debian machine, as root:
# system tools for the lab (iproute2, iptables, tcpdump, iputils ping) and a virtual
# environment in .venv with rawprobe and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v ip6tables >/dev/null || need+=(iptables)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ping >/dev/null || need+=(iputils-ping)
command -v traceroute >/dev/null || need+=(traceroute)
if ((${#need[@]})); then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# strict editable mode: a link tree that mypy can read (see scripts/typecheck.sh)
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=strict

#!/usr/bin/env bash
# Install everything rawprobe needs on a fresh Debian machine, as root:
# system tools for the lab and its tests (iproute2, iptables, tcpdump, iputils ping,
# traceroute, tracepath, tmux, setpriv; nmap for its DTD, xmllint, jq) and a virtual
# environment in .venv with rawprobe, its test extras and the API reference site's tools
# (docs/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v ip6tables >/dev/null || need+=(iptables)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ping >/dev/null || need+=(iputils-ping)
command -v traceroute >/dev/null || need+=(traceroute)
command -v tracepath >/dev/null || need+=(iputils-tracepath)  # trace --mtu's peer in the lab tests
command -v tmux >/dev/null || need+=(tmux)          # the live-view test drives a terminal
command -v nft >/dev/null || need+=(nftables)     # a NAT that leaves quotes rewritten (NAT lab test)
command -v setpriv >/dev/null || need+=(util-linux) # tests that run as uid 65534
command -v sysctl >/dev/null || need+=(procps)      # a topology test reads a namespace's sysctls
[ -f /usr/share/nmap/nmap.dtd ] || need+=(nmap)     # nmap's DTD (-oX is validated against it)
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v jq >/dev/null || need+=(jq)              # deploy/merge-ndjson.jq (shards' NDJSON)
python=${PYTHON:-python3}
"$python" -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# strict editable mode: a link tree that mypy can read (see scripts/typecheck.sh)
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=strict
.venv/bin/python -m pip install -q --disable-pip-version-check -r docs/requirements.txt

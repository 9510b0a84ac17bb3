"""``rawprobe lab up|down|status|exec|topologies``: the network-namespace lab from the
shell."""

from __future__ import annotations

import argparse
import re
from typing import Any

from rawprobe.cli.args import EXIT_OK, Parser, int_in
from rawprobe.errors import UsageError
from rawprobe.lab import (
    DNS_V4,
    NXDOMAIN_DNS_V4,
    Lab,
    down_all,
    lab_prefixes,
    lab_status,
    lab_up,
    topology_names,
)
from rawprobe.topology import NODE_NAME


def register(commands: Any) -> None:
    lab = commands.add_parser("lab", help="the network-namespace lab (root)")
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    up = actions.add_parser("up", help="build a lab and leave it running")
    up.add_argument("--prefix", help="namespace name prefix (default: a fresh one)")
    up.add_argument(
        "--topology", default="default", metavar="NAME|FILE",
        help="a shipped topology (see: rawprobe lab topologies) or a TOML file",
    )  # fmt: skip
    up.add_argument(
        "--seed", type=int_in(0, 0xFFFFFFFF), metavar="N",
        help="multipath hash seed of the run (default: a random one)",
    )  # fmt: skip
    up.set_defaults(handler=_up)
    topologies = actions.add_parser("topologies", help="list the shipped topologies")
    topologies.set_defaults(handler=_topologies)
    down = actions.add_parser("down", help="tear a lab down")
    down.add_argument("prefix", nargs="?", help="which lab (default: the only one)")
    down.add_argument("--all", action="store_true", help="remove every rawprobe lab")
    down.set_defaults(handler=_down)
    status = actions.add_parser("status", help="list labs and their namespaces")
    status.set_defaults(handler=_status)
    run = actions.add_parser("exec", help="run a command in a lab namespace")
    run.add_argument("--prefix", help="which lab (default: the only one)")
    run.add_argument(
        "--ns",
        default="client",
        type=_role,
        help="namespace role: client, r1, ... (default: client)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    run.set_defaults(handler=_exec)


def _role(text: str) -> str:
    if re.fullmatch(NODE_NAME, text) is None:
        raise argparse.ArgumentTypeError(f"not a lab role: {text!r}")
    return text


def describe(lab: Lab) -> list[str]:
    """What a user needs to know to probe the lab by hand."""
    topology = lab.topology
    lines = [
        f"  topology:   {topology.name}: {topology.description}",
        f"  namespaces: {' '.join(lab.namespaces)}",
        f"  client:  {lab.client_v4}  {lab.client_v6}",
    ]
    for paths in (lab.paths_v4, lab.paths_v6):
        label = "routers:" if len(paths) <= 1 else "paths:  "
        for path in paths:
            lines.append(f"  {label} {' '.join(path)}")
            label = "        "
    if any(node.name == "target" and node.listen for node in topology.nodes):
        lines += [
            f"  target:  {lab.target_v4}  {lab.target_v6}  (answers for 198.19.0.0/16 and"
            " 2001:db8:ff::/64)",
            f"  silent:  {lab.silent_v4}  {lab.silent_v6}",
            f"  dns:     {DNS_V4} (lab names), {NXDOMAIN_DNS_V4} (NXDOMAIN: every namespace's"
            " resolver)",
            f"  tcp open: {','.join(map(str, lab.open_ports))}; dropped:"
            f" {_span(lab.drop_ports)}; rejected: {_span(lab.reject_ports)}",
        ]
    if lab.seed is not None:
        lines.append(f"  multipath seed: {lab.seed}")
    return lines


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"


def _only_lab(prefix: str | None) -> Lab:
    if prefix is not None:
        return Lab.load(prefix)
    prefixes = lab_prefixes()
    if not prefixes:
        raise UsageError("no lab is up (start one with: rawprobe lab up)")
    if len(prefixes) > 1:
        raise UsageError(f"several labs are up ({', '.join(prefixes)}): name one with --prefix")
    return Lab.load(prefixes[0])


def _up(args: argparse.Namespace) -> int:
    lab = lab_up(args.prefix, args.topology, seed=args.seed)
    print(f"lab {lab.prefix} is up")
    for line in describe(lab):
        print(line)
    print("run commands in it with: rawprobe lab exec -- CMD   (tear down: rawprobe lab down)")
    return EXIT_OK


def _topologies(args: argparse.Namespace) -> int:
    names = topology_names()
    width = max(map(len, names))
    for name, description in names.items():
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    if args.all:
        removed = down_all()
        print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
        return EXIT_OK
    lab = _only_lab(args.prefix)
    lab.down()
    print(f"lab {lab.prefix} is down")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    lines = lab_status()
    print("\n".join(lines) if lines else "no lab is up")
    return EXIT_OK


def _exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("lab exec: give a command after --, e.g. rawprobe lab exec -- ip addr")
    lab = _only_lab(args.prefix)
    completed = lab.run(args.ns, *argv, check=False, stdout=None, stderr=None)
    return int(completed.returncode)

"""``rawprobe lab up|down|status|exec``: the network-namespace lab from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from rawprobe.cli.args import EXIT_OK, Parser
from rawprobe.errors import UsageError
from rawprobe.lab import (
    DNS_V4,
    NXDOMAIN_DNS_V4,
    ROLES,
    Lab,
    down_all,
    lab_prefixes,
    lab_status,
    lab_up,
)


def register(commands: Any) -> None:
    lab = commands.add_parser("lab", help="the network-namespace lab (root)")
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    up = actions.add_parser("up", help="build a lab and leave it running")
    up.add_argument("--prefix", help="namespace name prefix (default: a fresh one)")
    up.set_defaults(handler=_up)
    down = actions.add_parser("down", help="tear a lab down")
    down.add_argument("prefix", nargs="?", help="which lab (default: the only one)")
    down.add_argument("--all", action="store_true", help="remove every rawprobe lab")
    down.set_defaults(handler=_down)
    status = actions.add_parser("status", help="list labs and their namespaces")
    status.set_defaults(handler=_status)
    run = actions.add_parser("exec", help="run a command in a lab namespace")
    run.add_argument("--prefix", help="which lab (default: the only one)")
    run.add_argument(
        "--ns", default="client", choices=ROLES, help="namespace role (default: client)"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    run.set_defaults(handler=_exec)


def describe(lab: Lab) -> list[str]:
    """What a user needs to know to probe the lab by hand."""
    return [
        f"  namespaces: {' '.join(lab.namespaces)}",
        f"  client:  {lab.client_v4}  {lab.client_v6}",
        f"  routers: {' '.join(lab.router_v4)}",
        f"           {' '.join(lab.router_v6)}",
        f"  target:  {lab.target_v4}  {lab.target_v6}  (answers for 198.19.0.0/16 and"
        " 2001:db8:ff::/64)",
        f"  silent:  {lab.silent_v4}  {lab.silent_v6}",
        f"  dns:     {DNS_V4} (lab names), {NXDOMAIN_DNS_V4} (NXDOMAIN: every namespace's"
        " resolver)",
        f"  tcp open: {','.join(map(str, lab.open_ports))}; dropped:"
        f" {_span(lab.drop_ports)}; rejected: {_span(lab.reject_ports)}",
    ]


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
    lab = lab_up(args.prefix)
    print(f"lab {lab.prefix} is up")
    for line in describe(lab):
        print(line)
    print("run commands in it with: rawprobe lab exec -- CMD   (tear down: rawprobe lab down)")
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

"""The JSON Schemas of rawprobe's output (``rawprobe/2``), built from shared definitions.

This module is the source; the files in ``cli/schemas/`` (package data, printed by
``rawprobe schema``) are what it builds, one per command plus ``rawprobe.schema.json``
bundling them all. After changing a definition, write the files again::

    .venv/bin/python -I -m rawprobe.cli.output_schema

(``tests/cli/test_output_schema.py`` fails while the files and this module disagree.)
Nothing imports this module at run time: the command prints the files.

The shape every command follows:

- a **document** (``--json``) is ``{"schema", "command", LIST, "summary"}``, ``LIST``
  being ``hosts`` (ping, scan, sweep), ``traces`` (trace) or ``packets`` (send); trace
  documents also say their ``mode``;
- an **NDJSON stream** is one line per element of that list (``event`` names it:
  ``host``, ``round``, ``packet``), then one ``summary`` line holding the document's
  ``summary`` fields, interrupted runs included; every line has ``schema``,
  ``command`` and ``event``;
- every object lists all its fields (absent values are ``null``) and no others
  (``additionalProperties: false``), except maps keyed by data (state counts, names).

Adding a field is one line in the record that holds it (``DEFS``), as ``rtt_source``
in ``"ping_host"``::

    rtt_source=RTT_SOURCE,  # field(null(enum("kernel", "user")), "which send stamp...")

then write the files again (above); the renderer (cli/render*.py) adds the key. Without
both, the tests fail: every output is validated against the shipped files.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rawprobe.transport.base import Counters

Schema = dict[str, Any]

#: The value of every document's and event's ``schema`` field.
SCHEMA_ID = "rawprobe/2"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Commands with JSON output, in the order ``rawprobe schema`` lists them.
COMMANDS = ("ping", "trace", "scan", "sweep", "send", "sniff")
#: Where the built files live (package data of rawprobe.cli).
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
BUNDLE = "rawprobe"


# -- building blocks ---------------------------------------------------------------------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
MS: Schema = {"type": "number", "minimum": 0, "description": "milliseconds"}


def field(schema: Schema, description: str) -> Schema:
    """``schema`` with a description (shown in the docs' schema page)."""
    return {**schema, "description": description}


def null(schema: Schema) -> Schema:
    """``schema`` or ``null`` (an absent value)."""
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    inner = {key: value for key, value in schema.items() if key != "description"}
    nullable: Schema = {"anyOf": [inner, {"type": "null"}]}
    if "description" in schema:
        nullable["description"] = schema["description"]
    return nullable


def enum(*values: str) -> Schema:
    return {"enum": list(values)}


def const(value: str) -> Schema:
    return {"const": value}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    """A shared definition (copied into each file that uses it)."""
    return {"$ref": f"#/$defs/{name}"}


def mapping(values: Schema, keys: Schema | None = None) -> Schema:
    """An object used as a map (keys are data: states, protocols, addresses)."""
    schema: Schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = keys
    return schema


def record(description: str, **fields: Schema) -> Schema:
    """An object with exactly these fields, all required (absent values are null)."""
    return {
        "type": "object",
        "description": description,
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }


# -- shared definitions --------------------------------------------------------------------

STATE = field(enum("up", "down"), "liveness: the host answered (up) or not (down)")
FAMILY = field(enum("ipv4", "ipv6"), "the address family")
ADDRESS = field(STR, "an IPv4 or IPv6 address in text form")
INTERRUPTED = field(BOOL, "stopped by SIGINT or SIGTERM: what is listed is what was decided")
SOCKETS = field(
    enum("raw", "icmp-datagram", "udp-datagram", "tcp-connect", "packet"),
    "the rung of the privilege ladder used: raw sockets, ICMP datagram sockets, UDP "
    "sockets with IP_RECVERR, TCP connect(), or an AF_PACKET socket (sniff)",
)
COUNTERS = record(
    "the transport's receive-path counters (summed over workers)",
    **{f.name: COUNT for f in dataclasses.fields(Counters)},
)
SHARD = field(
    {"type": "string", "pattern": "^[0-9]+/[0-9]+$"}, "I/N: this run is shard I of N (--shard)"
)
SEED = field(null(INT), "of the random order (null: none given, one worker)")
RTT_SOURCE = field(
    null(enum("kernel", "user")),
    "which send stamp the RTTs used: kernel (the kernel stamped the probes as they left"
    " and the replies as they came) or user (any RTT sent-stamped in user space); null"
    " without an RTT",
)
PORT_STATE = enum("open", "closed", "filtered", "unfiltered", "open|filtered")
#: What every trace says of its run (cli/render_trace.py's ``run_data``).
RUN: dict[str, Schema] = {
    "destination_ttl": null(COUNT),
    "first_ttl": COUNT,
    "max_ttl": COUNT,
    "probes_sent": COUNT,
    "elapsed_ms": MS,
    "send_error": null(STR),
    "finished": field(BOOL, "false for a trace cut short by a signal"),
}

DEFS: dict[str, Schema] = {
    "counters": COUNTERS,
    # ping
    "ping_reply": record(
        "one echo reply (duplicates are listed and flagged, not counted as received)",
        seq=COUNT,
        source=ADDRESS,
        rtt_ms=MS,
        ttl=null(COUNT),
        size=COUNT,
        duplicate=BOOL,
    ),
    "ping_error": record(
        "an ICMP error answering a probe, or a send the local stack refused (then "
        "icmp_type and icmp_code are null and reason names the errno)",
        seq=COUNT,
        source=ADDRESS,
        reason=STR,
        icmp_type=null(COUNT),
        icmp_code=null(COUNT),
    ),
    "ping_host": record(
        "one pinged host",
        host=field(STR, "the host as given on the command line"),
        address=ADDRESS,
        family=FAMILY,
        state=field(enum("up", "down"), "up when some echo reply came"),
        transmitted=COUNT,
        received=field(COUNT, "echo replies, duplicates not counted"),
        duplicates=COUNT,
        packet_loss=field({"type": "number", "minimum": 0, "maximum": 1}, "a fraction"),
        elapsed_ms=MS,
        rtts_ms=array(MS),
        min_ms=null(MS),
        avg_ms=null(MS),
        max_ms=null(MS),
        mdev_ms=field(null(MS), "iputils' mdev"),
        jitter_ms=field(null(MS), "mean difference of consecutive RTTs"),
        rtt_source=RTT_SOURCE,
        replies=array(ref("ping_reply")),
        errors=array(ref("ping_error")),
        replies_omitted=field(COUNT, "replies counted but not listed (an endless run)"),
        errors_omitted=COUNT,
    ),
    "ping_summary": record(
        "the whole run",
        interrupted=INTERRUPTED,
        sockets=SOCKETS,
        hosts_up=COUNT,
        hosts_down=COUNT,
    ),
    # trace
    "mpls_label": record(
        "one entry of an RFC 4950 MPLS label stack",
        label=COUNT,
        tc=COUNT,
        bottom=BOOL,
        ttl=COUNT,
    ),
    "quote_rewrite": record(
        "a field of the probe that the ICMP error's quote shows changed (a NAT)",
        field=enum(
            "source", "destination", "source-port", "destination-port", "checksum", "ip-checksum"
        ),
        sent=field({"type": ["string", "integer"]}, "as sent (ip-checksum: what would fit)"),
        quoted=field({"type": ["string", "integer"]}, "as the quote shows it"),
    ),
    "nat": record(
        "where a NAT shows: the first hop whose quotes differ from the probes as sent",
        ttl=COUNT,
        address=ADDRESS,
        hostname=null(STR),
        rewrites=array(ref("quote_rewrite")),
    ),
    "trace_response": record(
        "the answer to one probe",
        address=ADDRESS,
        hostname=field(null(STR), "its reverse-DNS name (null: none, or -n)"),
        rtt_ms=MS,
        kind=field(STR, "time-exceeded, unreachable, echo-reply, tcp-syn-ack, tcp-rst..."),
        icmp_type=null(COUNT),
        icmp_code=null(COUNT),
        annotation=field(null(STR), "traceroute's mark (!H, !N, !X, !F-1400...)"),
        reply_ttl=null(COUNT),
        quoted_ttl=null(COUNT),
        mpls=array(ref("mpls_label")),
        attempt=field(COUNT, "0: the query's first probe answered; n: its n-th retry"),
        rewrites=field(array(ref("quote_rewrite")), "what its quote shows rewritten"),
    ),
    "trace_hop": record(
        "one TTL",
        ttl=COUNT,
        sent=field(COUNT, "probes sent for this TTL, retries included"),
        lost=field(COUNT, "queries nobody answered"),
        pending=field(COUNT, "queries still awaited when the run was interrupted"),
        rate_limited=field(BOOL, "its loss does not carry on: it limits its ICMP errors"),
        rtt_source=RTT_SOURCE,
        responses=array(ref("trace_response")),
        mtu=field(null(COUNT), "trace --mtu: the path MTU to here, where it drops (else null)"),
    ),
    "black_hole": record(
        "trace --mtu: from TTL ttl on, packets of drops bytes vanish without an ICMP error",
        ttl=COUNT,
        passes=field(COUNT, "the largest size that passes (bytes)"),
        drops=field(COUNT, "the smallest size dropped (bytes)"),
    ),
    "trace": record(
        "one trace",
        target=field(STR, "as given"),
        address=ADDRESS,
        family=FAMILY,
        method=enum("icmp", "udp", "tcp"),
        paris=BOOL,
        source=ADDRESS,
        flow=field(
            {"type": "array", "items": COUNT, "minItems": 2, "maxItems": 2},
            "what Paris mode keeps constant: (source port, destination port), or ICMP "
            "(identifier, checksum)",
        ),
        reached=BOOL,
        complete=field(BOOL, "reached, with an answer from every hop on the way"),
        **RUN,
        nat=field(null(ref("nat")), "a NAT the quotes show (null: none seen)"),
        hops=array(ref("trace_hop")),
        interface_mtu=field(null(COUNT), "trace --mtu: the MTU the probes left with"),
        path_mtu=field(null(COUNT), "trace --mtu: the largest size reaching the last hop"),
        black_hole=field(null(ref("black_hole")), "trace --mtu: the first MTU black hole"),
    ),
    "mda_hop": record(
        "one TTL of an MDA trace",
        ttl=COUNT,
        sent=field(COUNT, "probes sent for this TTL, retries included"),
        flows=field(COUNT, "flows probed at this TTL"),
        lost=field(COUNT, "flows nobody answered at this TTL"),
        pending=field(COUNT, "flows still awaited when the run was interrupted"),
        rtt_source=RTT_SOURCE,
        responses=field(array(ref("trace_response")), "one per interface: its first answer"),
    ),
    "mda_link": record(
        "flows seen at from (TTL ttl) and at to (TTL ttl + 1); null: a silent hop (*)",
        ttl=COUNT,
        **{"from": null(ADDRESS)},
        to=null(ADDRESS),
        flows=field(array(COUNT), "the flow ids seen on the link"),
    ),
    "mda_trace": record(
        "one MDA trace (trace --mda): every interface at each TTL and the links",
        target=field(STR, "as given"),
        address=ADDRESS,
        family=FAMILY,
        method=enum("icmp", "udp", "tcp"),
        source=ADDRESS,
        confidence=field({"enum": [95, 99]}, "% chance that the trace misses no interface"),
        reached=BOOL,
        complete=field(BOOL, "finished, reached, and the rule met at every interface"),
        rule_met=field(BOOL, "not cut short by the probe budget, max TTL or a silent tail"),
        **RUN,
        hops=array(ref("mda_hop")),
        links=array(ref("mda_link")),
    ),
    "trace_summary": record(
        "the whole run",
        interrupted=INTERRUPTED,
        sockets=SOCKETS,
        traces_reached=COUNT,
        retries=field(COUNT, "probes sent again because their query went unanswered"),
        counters=field(null(ref("counters")), "null when a library caller gave none"),
    ),
    "round_hop": record(
        "one hop's statistics over the rounds (mtr's row)",
        ttl=COUNT,
        addresses=array(ADDRESS),
        hostnames=field(mapping(STR), "address -> reverse-DNS name, for those known"),
        loss=field({"type": "number", "minimum": 0, "maximum": 1}, "a fraction"),
        sent=COUNT,
        received=COUNT,
        last_ms=null(MS),
        avg_ms=null(MS),
        best_ms=null(MS),
        worst_ms=null(MS),
        stdev_ms=null(MS),
        annotation=null(STR),
        flows=field(array(COUNT), "the flow ids whose probes the row counts"),
        rate_limited=field(BOOL, "its loss does not carry on: it limits its ICMP errors"),
        rewrites=field(array(ref("quote_rewrite")), "what its quotes show rewritten"),
    ),
    "round_path": record(
        "one path: the flows that reach the same interface at every TTL, and their rows",
        flows=array(COUNT),
        nat=null(ref("nat")),
        hops=array(ref("round_hop")),
    ),
    "rounds": record(
        "one target's statistics over the rounds of --live or --report",
        target=STR,
        address=ADDRESS,
        family=FAMILY,
        rounds=COUNT,
        flows=field(array(COUNT), "the flow ids probed each round"),
        nat=field(null(ref("nat")), "the nearest NAT any path shows"),
        hops=field(array(ref("round_hop")), "one row per (TTL, interface)"),
        paths=field(array(ref("round_path")), "the same statistics per path"),
    ),
    "rounds_summary": record(
        "the whole --live or --report run",
        interrupted=INTERRUPTED,
        sockets=SOCKETS,
        rounds=field(
            array(record("rounds done for one target", target=STR, address=ADDRESS, rounds=COUNT)),
            "rounds done per target (the round in progress at a signal is left out)",
        ),
    ),
    # scan
    "port": record(
        "one decided port",
        port=COUNT,
        protocol=enum("tcp", "udp"),
        state=PORT_STATE,
        reason=field(STR, "nmap's reason word: syn-ack, reset, no-response, ..."),
        ttl=null(COUNT),
        rtt_ms=null(MS),
        source=field(null(ADDRESS), "who answered (a router, for some ICMP errors)"),
        tries=COUNT,
    ),
    "scan_host": record(
        "one scanned host: open, filtered and unfiltered ports listed, closed ones counted",
        address=ADDRESS,
        family=FAMILY,
        state=field(enum("up", "down"), "up when the host itself answered some probe"),
        min_rtt_ms=null(MS),
        closed=COUNT,
        state_counts=mapping(COUNT, PORT_STATE),
        reason_counts=array(
            record(
                "ports per (protocol, state, reason)",
                protocol=enum("tcp", "udp"),
                state=PORT_STATE,
                reason=STR,
                count=COUNT,
            )
        ),
        ports=array(ref("port")),
    ),
    "scan_timing": record(
        "how the scan paced itself",
        srtt_ms=null(MS),
        rttvar_ms=null(MS),
        timeout_ms=MS,
        cwnd=NUM,
        peak_cwnd=NUM,
        backoffs=COUNT,
        delay_backoffs=COUNT,
        peak_rate_pps=COUNT,
        max_retries_used=COUNT,
        outages=COUNT,
        outage_ms=MS,
    ),
    "scan_summary": record(
        "the whole scan",
        technique=enum("syn", "ack", "udp", "connect", "syn+udp", "ack+udp"),
        sockets=SOCKETS,
        interrupted=INTERRUPTED,
        complete=field(BOOL, "every (host, port) decided (of this shard's share)"),
        incomplete_reason=null(STR),
        host_count=COUNT,
        hosts_up=COUNT,
        ports_per_host=COUNT,
        elapsed_ms=MS,
        probes_sent=COUNT,
        retransmissions=COUNT,
        rate_pps=COUNT,
        state_totals=mapping(COUNT, PORT_STATE),
        timing=ref("scan_timing"),
        counters=field(null(ref("counters")), "null for a connect() scan"),
        workers=COUNT,
        shard=SHARD,
        seed=SEED,
        protocols=field(
            mapping(
                record(
                    "one protocol's part of the scan",
                    technique=STR,
                    ports_per_host=COUNT,
                    state_totals=mapping(COUNT, PORT_STATE),
                    probes_sent=COUNT,
                    retransmissions=COUNT,
                    elapsed_ms=MS,
                ),
                enum("tcp", "udp"),
            ),
            "each protocol scanned (-sS -sU: both)",
        ),
    ),
    # sweep
    "sweep_host": record(
        "one host of the document (up ones; down ones too with --all)",
        address=ADDRESS,
        state=STATE,
    ),
    # A host event says what answered; the document's hosts are addresses only (the
    # sweep keeps a set of indices: a million hosts up cost a bitmap, not records).
    "sweep_answer": record(
        "one host as it is decided (up ones; down ones too with --all)",
        address=ADDRESS,
        state=STATE,
        reason=field(STR, "echo-reply, syn-ack, reset, port-unreachable, no-response..."),
        rtt_ms=null(MS),
        ttl=null(COUNT),
    ),
    "sweep_summary": record(
        "the whole sweep (of this shard)",
        method=enum("icmp", "tcp-syn", "tcp-ack", "udp"),
        port=null(COUNT),
        sockets=SOCKETS,
        lists_down=field(BOOL, "down hosts are listed too (--all)"),
        hosts_up=COUNT,
        hosts_down=COUNT,
        hosts_undecided=field(COUNT, "neither up nor down: never probed, or still awaited"),
        targets=field(COUNT, "addresses of this shard"),
        probes_sent=COUNT,
        elapsed_ms=MS,
        rate_pps=COUNT,
        workers=COUNT,
        shard=SHARD,
        seed=SEED,
        interrupted=INTERRUPTED,
        complete=BOOL,
        incomplete_reason=null(STR),
        counters=ref("counters"),
    ),
    # send and sniff
    "dissection_field": record(
        "one header field",
        name=STR,
        value=field({"type": ["integer", "string", "boolean", "null"]}, "raw value (bytes in hex)"),
        text=STR,
    ),
    "layer": record(
        "one protocol layer and its nested ones (a quoted packet, ICMP extensions)",
        layer=STR,
        fields=array(ref("dissection_field")),
        children=array(ref("layer")),
    ),
    "dissection": record(
        "a packet, layer by layer",
        summary=field(STR, "tcpdump-like one-line description"),
        length=COUNT,
        malformed=BOOL,
        layers=array(ref("layer")),
    ),
    "exchange": record(
        "one packet sent, and what answered it",
        sent=ref("dissection"),
        reply=null(ref("dissection")),
        reply_from=null(ADDRESS),
        rtt_ms=null(MS),
        error=field(null(STR), "why it could not be sent"),
        interrupted=field(BOOL, "sent, and the signal came while its reply was awaited"),
    ),
    "send_summary": record(
        "the whole run",
        target=STR,
        address=ADDRESS,
        sockets=SOCKETS,
        interrupted=INTERRUPTED,
        probes_sent=COUNT,
        replies=COUNT,
    ),
    "captured": record(
        "one captured packet",
        timestamp_ns=field(COUNT, "the kernel's receive time, ns since the epoch"),
        interface=null(STR),
        direction=null(enum("in", "out")),
        packet=ref("dissection"),
    ),
    "sniff_summary": record(
        "the whole capture",
        sockets=field(null(SOCKETS), "packet (live capture), null when reading a file"),
        interrupted=INTERRUPTED,
        captured=field(COUNT, "packets kept by the filters"),
        seen=COUNT,
        kernel_drops=null(COUNT),
    ),
}


# -- documents and events ----------------------------------------------------------------


def document(command: str, description: str, **fields: Schema) -> Schema:
    """A ``--json`` document: the header, the command's fields (list, summary)."""
    return record(description, schema=const(SCHEMA_ID), command=const(command), **fields)


def event(command: str, name: str, definition: str) -> Schema:
    """An NDJSON line: the header, ``event``, then the fields of ``DEFS[definition]``."""
    body = DEFS[definition]
    header = {"schema": const(SCHEMA_ID), "command": const(command), "event": const(name)}
    return record(f"NDJSON event {name!r}: {body['description']}", **header, **body["properties"])


OUTPUTS: dict[str, dict[str, Schema]] = {
    "ping": {
        "document": document(
            "ping", "ping --json", hosts=array(ref("ping_host")), summary=ref("ping_summary")
        ),
    },
    "trace": {
        "document": {
            "description": "trace --json (mode trace), trace --mda --json (mode mda), or trace "
            "--report --json (mode report)",
            "oneOf": [
                document(
                    "trace",
                    f"trace {option}--json",
                    mode=const(mode),
                    traces=array(ref(trace)),
                    summary=ref(summary),
                )
                for mode, option, trace, summary in (
                    ("trace", "", "trace", "trace_summary"),
                    ("mda", "--mda ", "mda_trace", "trace_summary"),
                    ("report", "--report ", "rounds", "rounds_summary"),
                )
            ],
        },
        "event_round": event("trace", "round", "rounds"),
        "event_summary": event("trace", "summary", "rounds_summary"),
    },
    "scan": {
        "document": document(
            "scan", "scan --json", hosts=array(ref("scan_host")), summary=ref("scan_summary")
        ),
        "event_host": event("scan", "host", "scan_host"),
        "event_summary": event("scan", "summary", "scan_summary"),
    },
    "sweep": {
        "document": document(
            "sweep", "sweep --json", hosts=array(ref("sweep_host")), summary=ref("sweep_summary")
        ),
        "event_host": event("sweep", "host", "sweep_answer"),
        "event_summary": event("sweep", "summary", "sweep_summary"),
    },
    "send": {
        "document": document(
            "send", "send --json", packets=array(ref("exchange")), summary=ref("send_summary")
        ),
    },
    "sniff": {
        "event_packet": event("sniff", "packet", "captured"),
        "event_summary": event("sniff", "summary", "sniff_summary"),
    },
}


def _refs(schema: Any) -> set[str]:
    """Names of the definitions ``schema`` refers to."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[1]} if "$ref" in schema else set()
        for value in schema.values():
            found |= _refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*map(_refs, schema)) if schema else set()
    return set()


def command_schema(command: str) -> Schema:
    """One command's file: every output of it validates against it (a document, or one
    NDJSON line); ``$defs`` holds the outputs and the definitions they use."""
    outputs = OUTPUTS[command]
    names: set[str] = set()
    pending = _refs(outputs)
    while pending:
        name = pending.pop()
        names.add(name)
        pending |= _refs(DEFS[name]) - names
    return {
        "$schema": DRAFT,
        "$id": f"urn:rawprobe:2:{command}",
        "title": f"rawprobe {command} output ({SCHEMA_ID})",
        "description": "A --json document or one NDJSON line of rawprobe " + command,
        "oneOf": [ref(name) for name in outputs],
        "$defs": {**outputs, **{name: DEFS[name] for name in sorted(names)}},
    }


def bundle() -> Schema:
    """Every command's schema in one (each embedded with its own ``$id``)."""
    return {
        "$schema": DRAFT,
        "$id": "urn:rawprobe:2",
        "title": f"rawprobe output ({SCHEMA_ID})",
        "description": "Any --json document or NDJSON line of any rawprobe command",
        "oneOf": [{"$ref": f"urn:rawprobe:2:{command}"} for command in COMMANDS],
        "$defs": {command: command_schema(command) for command in COMMANDS},
    }


def files() -> dict[str, str]:
    """File name -> text, as shipped."""
    texts = {f"{c}.schema.json": _text(command_schema(c)) for c in COMMANDS}
    texts[f"{BUNDLE}.schema.json"] = _text(bundle())
    return texts


def _text(schema: Schema) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    """Write the files (``python -m rawprobe.cli.output_schema``)."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in files().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote {SCHEMA_DIR / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rendering MDA traces (cli/render_mda.py): plain lines, JSON, Graphviz and the rich
table, from traces of the simulated graphs (tests/multipath_graphs.py)."""

from __future__ import annotations

import json

import output_check
from multipath_graphs import ECMP4, LINE, TARGET, result_of, run_pure, truth
from rich.console import Console

from rawprobe.cli import render_mda
from rawprobe.probes.multipath import MultipathOptions


def test_plain_lines_give_each_interface_once_a_ttl_with_its_next_hops() -> None:
    result = result_of(ECMP4, seed=3)
    lines = render_mda.mda_lines(result, {"198.18.1.1": "r1.lab.test"})
    assert lines[0] == (f"multipath trace to {TARGET} ({TARGET}), 30 hops max, udp, 95% confidence")
    assert lines[1].startswith(" 1  r1.lab.test (198.18.1.1)")
    nexts = ["198.18.2.2", "198.18.3.2", "198.18.4.2", "198.18.5.2"]
    assert lines[1].split(" -> ")[1].split(", ") == nexts  # (in numeric order)
    assert [line[4:].split()[0] for line in lines[6:9]] == ["198.18.6.2", "198.18.8.2",
                                                        "198.18.10.2"]  # fmt: skip
    body = lines[1:-1]
    assert len(body) == len(result.nodes)  # one line an interface
    assert sum("(destination)" in line for line in body) == 3  # TTLs 4, 5 and 6
    assert [line[:2] for line in body].count(" 2") == 1  # the TTL once, then blank
    assert lines[-1] == (
        f"14 interfaces, 14 links, {result.probes_sent} probes, 0.01 s: "
        "every interface found with 95% confidence"
    )


def test_json_keeps_one_response_an_interface_and_adds_the_links() -> None:
    result = result_of(ECMP4, seed=3)
    document = render_mda.mda_document([result], interrupted=False)
    data = output_check.document(json.dumps(document), "trace")
    assert data["mode"] == "mda" and data["summary"]["interrupted"] is False
    assert data["summary"]["traces_reached"] == 1
    (trace,) = data["traces"]
    assert trace["confidence"] == 95 and trace["probes_sent"] == result.probes_sent
    assert trace["complete"] and trace["reached"] and trace["destination_ttl"] == 4
    seen = {(hop["ttl"], r["address"]) for hop in trace["hops"] for r in hop["responses"]}
    assert seen == truth(ECMP4, TARGET)
    assert all(len(hop["responses"]) == len(hop_.addresses)
               for hop, hop_ in zip(trace["hops"], result.hops, strict=True))  # fmt: skip
    assert sum(len(link["flows"]) for link in trace["links"]) == sum(
        len(link.flows) for link in result.links
    )
    first = trace["links"][0]
    assert set(first) == {"ttl", "from", "to", "flows"} and first["ttl"] == 1
    assert all(isinstance(flow, int) for link in trace["links"] for flow in link["flows"])


def test_a_silent_hop_is_a_star_and_null_in_json() -> None:
    options = MultipathOptions(wait_s=0.2, retries=1)
    result = run_pure(LINE, options, silent=["198.18.2.2"])[0].result()
    lines = render_mda.mda_lines(result)
    assert lines[2].split()[:2] == ["2", "*"] and "-> 198.18.3.2" in lines[2]
    trace = output_check.part(render_mda.mda_data(result), "trace", "mda_trace")
    assert trace["hops"][1]["responses"] == [] and trace["hops"][1]["lost"] > 0
    links = {(link["ttl"], link["from"], link["to"]) for link in trace["links"]}
    assert {(1, "198.18.1.1", None), (2, None, "198.18.3.2")} <= links


def test_graphviz_has_an_interface_once_and_a_labelled_edge_per_link() -> None:
    result = result_of(ECMP4, seed=3)
    dot = render_mda.mda_dot([result, result_of(LINE)])
    assert dot.startswith("digraph multipath {") and dot.rstrip().endswith("}")
    assert dot.count("subgraph cluster_") == 2
    declared = [line.split(" [")[0].strip() for line in dot.splitlines() if "[label=" in line]
    assert declared.count('"0:198.18.6.2"') == 1  # r2, at TTLs 3, 4 and 5: one node
    assert f'"0:{TARGET}" [label="{TARGET}", shape=doubleoctagon]' in dot
    assert '"0:source" -> "0:198.18.1.1";' in dot
    edges = [line for line in dot.splitlines() if line.startswith('    "0:') and "->" in line]
    links = {(link.source, link.to) for link in result.links}
    assert len(edges) == len(links) + 1  # (+ the source's)


def test_the_rich_table_and_the_summary_of_a_trace_cut_short() -> None:
    result = result_of(ECMP4, options=MultipathOptions(max_probes=40))
    console = Console(record=True, width=300)
    console.print(render_mda.mda_table(result))
    text = " ".join(console.export_text().split())  # (the caption wraps to the table)
    assert "198.18.1.1" in text and "next hops (flows)" in text
    assert "the destination did not answer" in text
    assert render_mda.mda_lines(result)[-1].endswith(
        "incomplete: the destination did not answer; the rule was not met everywhere "
        "(probe budget, max TTL or a silent tail)"
    )

"""Topology: nodes of chips on a scale-up fabric and a rail-optimised fat tree, described by counts."""
import pytest

from archsim.cost.topology import build_topology, to_networkx, topology_for
from archsim.errors import ConfigError
from test_collectives import make_hw


def test_counts_and_spans():
    topo = build_topology(make_hw(), nodes=256)  # 2048 chips: DeepSeek-V3's training cluster
    assert topo.chips == 2048
    span = topo.span(64)  # EP64 over 8 nodes
    assert (span.per_node, span.nodes, span.crosses_nodes) == (8, 8, True)
    assert topo.span(4).nodes == 1 and not topo.span(4).crosses_nodes
    assert topo.node_of(17) == 2 and topo.rail_of(17) == 1


def test_strided_groups():
    """A group of ranks ``stride`` apart (CP / DP beside TP): 8-chip nodes; stride 8 puts every member on its own
    node, stride 2 puts 4 members on each node, stride 1 is the consecutive group."""
    topo = build_topology(make_hw(), nodes=4)
    assert (topo.span(2, stride=8).per_node, topo.span(2, stride=8).nodes) == (1, 2)
    assert (topo.span(4, stride=8).per_node, topo.span(4, stride=8).nodes) == (1, 4)
    assert (topo.span(8, stride=2).per_node, topo.span(8, stride=2).nodes) == (4, 2)
    assert not topo.span(4, stride=2).crosses_nodes
    assert topo.span(8, stride=1) == topo.span(8)
    with pytest.raises(ConfigError):
        topo.span(5, stride=8)  # ranks 0..32 do not lie within 32 chips
    with pytest.raises(ConfigError):
        topo.span(2, stride=0)


def test_paths_are_rail_aligned():
    hw = make_hw()
    topo = build_topology(hw, nodes=2)
    up, out = hw.node.scale_up, hw.node.scale_out
    assert topo.path(0, 0) == ()
    assert topo.path(0, 3) == (up,)  # switch: one hop in node
    assert topo.path(0, 8) == (out,)  # same rail: straight over the network
    assert topo.path(0, 9) == (up, out)  # other rail: NVLink to the matching rail first


def test_ring_and_torus_hops():
    hw = make_hw()
    ring = build_topology(hw, scale_up="ring")
    assert ring.scale_up_hops(0, 4) == 4 and ring.scale_up_hops(0, 7) == 1
    assert ring.scale_up_bandwidth_per_neighbour() == hw.node.scale_up.bandwidth_bytes_per_s / 2
    torus = build_topology(hw, scale_up="torus", torus_dims=(2, 4))
    assert torus.scale_up_hops(0, 7) == 1 + 1  # coords (0,0) -> (1,3): one hop per axis with wrap
    assert torus.scale_up_bandwidth_per_neighbour() == hw.node.scale_up.bandwidth_bytes_per_s / 4


def test_networkx_full_small_system():
    topo = build_topology(make_hw(), nodes=2)
    g = to_networkx(topo)
    chips = [n for n, d in g.nodes(data=True) if d["kind"] == "chip"]
    assert len(chips) == 16 and not g.graph["summarised"]
    # 16 chip-rail edges + 16 chip-switch edges + 8 rail-spine edges
    assert g.number_of_edges() == 16 + 16 + 8
    assert all("bandwidth_bytes_per_s" in d for _, _, d in g.edges(data=True))


def test_networkx_large_system_stays_small():
    topo = build_topology(make_hw(), nodes=12_500)  # 100,000 chips
    assert topo.chips == 100_000
    g = to_networkx(topo)
    assert g.graph["summarised"]
    assert g.number_of_nodes() < 12_600  # one vertex per node, not per chip
    assert sum(d.get("chips", 1) for _, d in g.nodes(data=True) if d["kind"] in ("chip", "node_summary")) == 100_000


def test_ring_graph_edges():
    g = to_networkx(build_topology(make_hw(), scale_up="ring"))
    assert g.number_of_edges() == 8


def test_bad_topologies():
    hw = make_hw()
    with pytest.raises(ConfigError, match="node.count"):
        build_topology(hw, nodes=0)
    with pytest.raises(ConfigError, match="torus_dims"):
        build_topology(hw, scale_up="torus", torus_dims=(3, 3))
    with pytest.raises(ConfigError, match="group"):
        build_topology(hw).span(9)
    assert topology_for(hw, 9).nodes == 2

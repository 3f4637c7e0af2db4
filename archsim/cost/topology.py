"""Cluster topology: nodes of chips on a scale-up fabric, joined by a rail-optimised fat tree.

A system is described by counts (chips per node, number of nodes), never by listing every chip, so a
100,000-chip cluster costs nothing to describe. ``to_networkx`` draws the graph on demand: every chip
when the system is small, otherwise one detailed node plus one summary vertex per other node.

Bandwidths are per direction per chip, as ``archsim.config.hardware.Link`` defines them.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import TYPE_CHECKING, Literal

from archsim.config.hardware import Hardware, Link
from archsim.errors import ConfigError

if TYPE_CHECKING:
    import networkx as nx  # imported where used: it costs ~0.1 s at start-up

ScaleUp = Literal["switch", "ring", "torus"]


@dataclass(frozen=True, kw_only=True)
class GroupSpan:
    """Where a communicator group of ``size`` chips lies: ``per_node`` chips on each of ``nodes`` nodes."""

    size: int
    per_node: int
    nodes: int

    @property
    def crosses_nodes(self) -> bool:
        return self.nodes > 1


@dataclass(frozen=True, kw_only=True)
class Topology:
    """A cluster summarised by counts.

    ``scale_up`` is the intra-node fabric: ``switch`` (NVSwitch: any pair one hop, full per-chip
    bandwidth), ``ring`` (each chip has two neighbours; the per-chip bandwidth is split over them) or
    ``torus`` (``torus_dims`` chips per axis, the per-chip bandwidth split over 2 links per axis).
    Across nodes, chip ``i`` of every node shares rail ``i`` (a leaf switch), and rails meet at a spine:
    a rail-optimised fat tree, so same-rail traffic takes one leaf hop and cross-rail traffic
    three hops (leaf, spine, leaf) or an NVLink hop to the matching rail first.
    """

    chips_per_node: int
    nodes: int
    scale_up: Link
    scale_out: Link
    scale_up_kind: ScaleUp = "switch"
    torus_dims: tuple[int, ...] = ()

    @property
    def chips(self) -> int:
        return self.chips_per_node * self.nodes

    def node_of(self, rank: int) -> int:
        """The node holding global chip ``rank`` (ranks fill a node before the next)."""
        self._check_rank(rank)
        return rank // self.chips_per_node

    def rail_of(self, rank: int) -> int:
        """The rail (local index within its node) of chip ``rank``."""
        self._check_rank(rank)
        return rank % self.chips_per_node

    def span(self, group: int, stride: int = 1) -> GroupSpan:
        """How a group of ``group`` ranks ``stride`` apart (1: consecutive) spreads over nodes. A stride of a node
        or more puts every member on its own node; a smaller one (a divisor of the node, as tp is) puts
        node // stride members on each node."""
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ConfigError(None, "stride", "a positive whole number of ranks", stride)
        if not isinstance(group, int) or group < 1 or (group - 1) * stride + 1 > self.chips:
            raise ConfigError(None, "group", f"a group whose members ({stride} apart) lie within {self.chips} chips",
                              group)
        per_node = min(group, max(1, self.chips_per_node // stride))
        return GroupSpan(size=group, per_node=per_node, nodes=ceil(group / per_node))

    def scale_up_hops(self, a: int, b: int) -> int:
        """Hops between two chips of the same node on the scale-up fabric."""
        if self.node_of(a) != self.node_of(b):
            raise ConfigError(None, "ranks", "two chips on the same node", (a, b))
        la, lb = self.rail_of(a), self.rail_of(b)
        if la == lb:
            return 0
        if self.scale_up_kind == "switch":
            return 1
        if self.scale_up_kind == "ring":
            d = abs(la - lb)
            return min(d, self.chips_per_node - d)
        return sum(min(abs(x - y), n - abs(x - y))
                   for x, y, n in zip(_coords(la, self.torus_dims), _coords(lb, self.torus_dims), self.torus_dims))

    def path(self, a: int, b: int) -> tuple[Link, ...]:
        """The links a message from chip ``a`` to chip ``b`` crosses (rail-aligned: NVLink to the
        destination's rail first, then one network hop on that rail)."""
        if a == b:
            return ()
        if self.node_of(a) == self.node_of(b):
            return (self.scale_up,) * self.scale_up_hops(a, b)
        hop_to_rail = (self.scale_up,) if self.rail_of(a) != self.rail_of(b) else ()
        return hop_to_rail + (self.scale_out,)

    def scale_up_bandwidth_per_neighbour(self) -> float:
        """Per-direction bandwidth of one scale-up port: the chip's total over its fabric ports."""
        bw = self.scale_up.bandwidth_bytes_per_s
        if self.scale_up_kind == "switch":
            return bw
        if self.scale_up_kind == "ring":
            return bw / 2
        return bw / (2 * len(self.torus_dims))

    def _check_rank(self, rank: int) -> None:
        if not isinstance(rank, int) or not 0 <= rank < self.chips:
            raise ConfigError(None, "rank", f"a chip index in [0, {self.chips})", rank)


def build_topology(hw: Hardware, *, nodes: int = 1, scale_up: ScaleUp = "switch",
                   torus_dims: tuple[int, ...] = ()) -> Topology:
    """The topology of ``nodes`` nodes of ``hw`` (chips per node and links from ``hw.node``)."""
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise ConfigError(hw.source_file, "node.count", "a positive whole number of nodes", nodes)
    if scale_up not in ("switch", "ring", "torus"):
        raise ConfigError(hw.source_file, "node.scale_up.kind", "one of switch, ring, torus", scale_up)
    per_node = hw.node.chips_per_node
    if scale_up == "torus":
        product = 1
        for dim in torus_dims:
            product *= dim
        if not torus_dims or product != per_node:
            raise ConfigError(hw.source_file, "node.scale_up.torus_dims",
                              f"axis sizes whose product is chips per node ({per_node})", torus_dims)
    return Topology(chips_per_node=per_node, nodes=nodes, scale_up=hw.node.scale_up,
                    scale_out=hw.node.scale_out, scale_up_kind=scale_up, torus_dims=tuple(torus_dims))


def topology_for(hw: Hardware, devices: int, **kwargs) -> Topology:
    """The smallest whole-node topology holding ``devices`` chips."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(hw.source_file, "devices", "a positive whole number of devices", devices)
    return build_topology(hw, nodes=ceil(devices / hw.node.chips_per_node), **kwargs)


def to_networkx(topo: Topology, *, max_chips: int = 4096) -> nx.Graph:
    """Draw the topology. Up to ``max_chips`` chips: every chip, switch and rail. Larger systems:
    node 0 in full and one summary vertex per remaining node (attribute ``chips``), so the graph stays
    small. Edges carry ``bandwidth_bytes_per_s``, ``latency_s``, ``energy_j_per_bit`` and ``link``."""
    import networkx as nx
    g = nx.Graph(nodes=topo.nodes, chips_per_node=topo.chips_per_node, summarised=topo.chips > max_chips)
    spine = "spine"
    if topo.nodes > 1:
        g.add_node(spine, kind="switch")
        for rail in range(topo.chips_per_node):
            g.add_node(f"rail{rail}", kind="switch")
            _edge(g, f"rail{rail}", spine, topo.scale_out, bandwidth=topo.scale_out.bandwidth_bytes_per_s * topo.nodes)
    detailed = topo.nodes if topo.chips <= max_chips else 1
    for node in range(detailed):
        _add_node_detail(g, topo, node)
    for node in range(detailed, topo.nodes):
        name = f"node{node}"
        g.add_node(name, kind="node_summary", chips=topo.chips_per_node)
        for rail in range(topo.chips_per_node):
            _edge(g, name, f"rail{rail}", topo.scale_out)
    return g


def _add_node_detail(g: nx.Graph, topo: Topology, node: int) -> None:
    chips = [f"n{node}.c{i}" for i in range(topo.chips_per_node)]
    for i, chip in enumerate(chips):
        g.add_node(chip, kind="chip", node=node, rail=i)
        if topo.nodes > 1:
            _edge(g, chip, f"rail{i}", topo.scale_out)
    per_port = topo.scale_up_bandwidth_per_neighbour()
    if topo.scale_up_kind == "switch":
        sw = f"n{node}.switch"
        g.add_node(sw, kind="switch")
        for chip in chips:
            _edge(g, chip, sw, topo.scale_up)
    elif topo.scale_up_kind == "ring":
        for i, chip in enumerate(chips):
            if topo.chips_per_node > 1:
                _edge(g, chip, chips[(i + 1) % len(chips)], topo.scale_up, bandwidth=per_port)
    else:
        for i, chip in enumerate(chips):
            coords = _coords(i, topo.torus_dims)
            for axis, n in enumerate(topo.torus_dims):
                if n > 1:
                    nxt = list(coords)
                    nxt[axis] = (coords[axis] + 1) % n
                    _edge(g, chip, chips[_index(nxt, topo.torus_dims)], topo.scale_up, bandwidth=per_port)


def _edge(g: nx.Graph, a: str, b: str, link: Link, *, bandwidth: float | None = None) -> None:
    g.add_edge(a, b, link=link.name, latency_s=link.latency_s, energy_j_per_bit=link.energy_j_per_bit,
               bandwidth_bytes_per_s=link.bandwidth_bytes_per_s if bandwidth is None else bandwidth)


def _coords(index: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n in dims:
        out.append(index % n)
        index //= n
    return tuple(out)


def _index(coords: list[int], dims: tuple[int, ...]) -> int:
    index, stride = 0, 1
    for c, n in zip(coords, dims):
        index += c * stride
        stride *= n
    return index

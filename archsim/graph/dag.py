"""``OpGraph``: the directed acyclic graph a phase graph is (nodes keyed by op name with attribute ``op``,
data-dependency edges, graph-level attributes in ``.graph``), and ``topological_order``.

Phase graphs are a container plus one algorithm (a topological order), so archsim keeps its own: importing
networkx costs ~0.1 s, a third of a whole ``archsim run`` process. OpGraph answers the part of
``networkx.DiGraph``'s interface archsim uses (``nodes[name]``, ``nodes(data=True)``, ``predecessors``,
``successors``, ``in_degree``, ``number_of_nodes``/``number_of_edges``, ``graph``), so code that prices or
schedules a graph takes either; ``to_networkx()`` hands a copy to networkx where a real graph algorithm is wanted.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any


class GraphCycleError(ValueError):
    """The graph has a cycle (a topological order does not exist)."""


class NodeView(Mapping):
    """``graph.nodes``: a read-only mapping name -> attribute dict, in insertion order; ``nodes(data=True)``
    gives (name, attributes) pairs as networkx's NodeView does."""

    __slots__ = ("_node",)

    def __init__(self, node: dict[Hashable, dict]) -> None:
        self._node = node

    def __getitem__(self, name: Hashable) -> dict:
        return self._node[name]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __contains__(self, name: object) -> bool:
        return name in self._node

    def __call__(self, data: bool = False) -> Iterable:
        return self._node.items() if data else self._node.keys()


class OpGraph:
    """A directed graph with node and graph attributes; nodes and each node's successors keep insertion order, an
    edge added twice is one edge, and an edge may only join nodes already added (so a typo in a dependency is an
    error, not a silent extra node)."""

    def __init__(self) -> None:
        self.graph: dict[str, Any] = {}  # graph-level attributes (phase, tokens, repeats, ...)
        self._node: dict[Hashable, dict] = {}
        self._succ: dict[Hashable, dict[Hashable, None]] = {}
        self._pred: dict[Hashable, dict[Hashable, None]] = {}

    # -- building ---------------------------------------------------------------------------------
    def add_node(self, name: Hashable, **attrs: Any) -> None:
        """Add ``name`` (or update its attributes)."""
        if name in self._node:
            self._node[name].update(attrs)
            return
        self._node[name] = attrs
        self._succ[name] = {}
        self._pred[name] = {}

    def add_nodes_from(self, nodes: Iterable) -> None:
        """Add nodes given as names or (name, attribute dict) pairs."""
        for item in nodes:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
                self.add_node(item[0], **item[1])
            else:
                self.add_node(item)

    def add_edge(self, u: Hashable, v: Hashable) -> None:
        """Edge u -> v (v depends on u); both must be nodes already."""
        for end in (u, v):
            if end not in self._node:
                raise ValueError(f"edge {u!r} -> {v!r}: {end!r} is not a node of the graph")
        self._succ[u][v] = None
        self._pred[v][u] = None

    def add_edges_from(self, edges: Iterable[tuple[Hashable, Hashable]]) -> None:
        for u, v in edges:
            self.add_edge(u, v)

    # -- reading ------------------------------------------------------------------------------------
    @property
    def nodes(self) -> NodeView:
        return NodeView(self._node)

    @property
    def edges(self) -> list[tuple[Hashable, Hashable]]:
        """Every edge (u, v), by u in node order, then v in insertion order."""
        return [(u, v) for u, succ in self._succ.items() for v in succ]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._node)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._node
        except TypeError:  # an unhashable name is in no graph
            return False

    def __len__(self) -> int:
        return len(self._node)

    def predecessors(self, name: Hashable) -> Iterator[Hashable]:
        return iter(self._pred[name])

    def successors(self, name: Hashable) -> Iterator[Hashable]:
        return iter(self._succ[name])

    def in_degree(self, name: Hashable) -> int:
        return len(self._pred[name])

    def out_degree(self, name: Hashable) -> int:
        return len(self._succ[name])

    def number_of_nodes(self) -> int:
        return len(self._node)

    def number_of_edges(self) -> int:
        return sum(len(succ) for succ in self._succ.values())

    def topological_order(self) -> list[Hashable]:
        """Kahn's algorithm generation by generation, in node and successor insertion order: the same order as
        ``networkx.topological_sort`` on a DiGraph built the same way (so schedules that break ties by it do not
        change). Raises GraphCycleError on a cycle."""
        indegree = {name: len(pred) for name, pred in self._pred.items() if pred}
        generation = [name for name, pred in self._pred.items() if not pred]
        order: list[Hashable] = []
        while generation:
            order.extend(generation)
            following = []
            for name in generation:
                for child in self._succ[name]:
                    indegree[child] -= 1
                    if indegree[child] == 0:
                        following.append(child)
                        del indegree[child]
            generation = following
        if indegree:
            raise GraphCycleError(f"the graph has a cycle through {next(iter(indegree))!r}")
        return order

    def to_networkx(self):  # noqa: ANN201 - networkx is imported only here
        """A ``networkx.DiGraph`` copy (nodes, edges and attributes, same insertion orders)."""
        import networkx as nx

        g = nx.DiGraph()
        g.graph.update(self.graph)
        g.add_nodes_from(self._node.items())
        g.add_edges_from(self.edges)
        return g


def is_graph(obj: object) -> bool:
    """True for an OpGraph or a networkx.DiGraph (graph attributes and predecessors), False for a plain iterable
    of ops; networkx is not imported to tell."""
    return isinstance(obj, OpGraph) or (isinstance(getattr(obj, "graph", None), dict) and hasattr(obj, "predecessors"))


def topological_order(graph: Any) -> list[Hashable]:
    """A topological order of ``graph``: an OpGraph's own, or networkx's for a ``networkx.DiGraph`` (which callers
    may still pass; networkx is imported only then)."""
    if isinstance(graph, OpGraph):
        return graph.topological_order()
    import networkx as nx

    return list(nx.topological_sort(graph))

"""NAS-Bench-201: 15,625 cells of 6 edges x 5 ops, in the benchmark's official index order."""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
import random
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.spaces._base import BaseSpace

#: candidate operations, in the order of the official code (their position is the op index)
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: cell edges as (to_node, from_node), in the order they appear in the arch string
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

#: number of architectures: one of 5 ops on each of 6 edges
NUM_ARCHS = len(OPS) ** len(EDGES)

#: node order of the "adjacency" encoding: input, one node per edge in `EDGES` order (as BRP-NAS), output
ADJACENCY_NODES: tuple[str, ...] = ("input", *(f"{dst}<-{src}" for dst, src in EDGES), "output")

#: node types of the "adjacency" encoding's one-hot node features
ADJACENCY_NODE_TYPES: tuple[str, ...] = ("input", *OPS, "output")

#: the official generator shuffles the lexicographic list with Python's `random.seed(88)`
_OFFICIAL_SHUFFLE_SEED = 88


def _format(ops: Sequence[str]) -> str:
    """The canonical string of a cell given its ops in `EDGES` order."""
    nodes = []
    for dst in range(1, 4):
        nodes.append("|" + "|".join(f"{op}~{src}" for op, (to, src) in zip(ops, EDGES) if to == dst) + "|")
    return "+".join(nodes)


def _parse(arch: object) -> tuple[str, ...]:
    """The ops of `arch` in `EDGES` order; raise HwlatError naming the first problem and where it is."""
    if not isinstance(arch, str):
        raise HwlatError(f"nb201 arch must be a string, got {type(arch).__name__} {arch!r}")
    text = arch.strip()
    where = f"nb201 arch {arch!r}"
    if not text:
        raise HwlatError(f"{where}: empty string (expected e.g. {_format(['nor_conv_3x3'] * 6)!r})")
    nodes = text.split("+")
    if len(nodes) != 3:
        raise HwlatError(f"{where}: {len(nodes)} node(s) separated by '+', expected 3 (nodes 1, 2, 3)")
    ops: list[str] = []
    for dst, node in enumerate(nodes, start=1):
        if len(node) < 2 or not (node.startswith("|") and node.endswith("|")):
            raise HwlatError(f"{where}: node {dst} {node!r} must start and end with '|'")
        edges = node[1:-1].split("|")
        if len(edges) != dst:
            raise HwlatError(
                f"{where}: node {dst} has {len(edges)} input edge(s), expected {dst} (from nodes 0..{dst - 1})"
            )
        for src, edge in enumerate(edges):
            op, tilde, index = edge.partition("~")
            if not tilde:
                raise HwlatError(f"{where}: node {dst}, edge from node {src}: {edge!r} is not of the form 'op~{src}'")
            if index != str(src):
                raise HwlatError(f"{where}: node {dst}, edge from node {src}: input index {index!r}, expected {src}")
            if op not in OPS:
                raise HwlatError(
                    f"{where}: node {dst}, edge from node {src}: unknown op {op!r} (expected one of {', '.join(OPS)})"
                )
            ops.append(op)
    return tuple(ops)  # the string lists edges in `EDGES` order


@functools.lru_cache(maxsize=1)
def _official_order() -> tuple[str, ...]:
    """All cells in NAS-Bench-201 index order: lexicographic over `EDGES` x `OPS`, then the official shuffle."""
    archs = [_format(ops) for ops in itertools.product(OPS, repeat=len(EDGES))]
    random.Random(_OFFICIAL_SHUFFLE_SEED).shuffle(archs)
    return tuple(archs)


@functools.lru_cache(maxsize=1)
def _index_of() -> dict[str, int]:
    """Canonical string -> official index."""
    return {arch: i for i, arch in enumerate(_official_order())}


def _adjacency() -> np.ndarray:
    """The op-on-node DAG shared by all cells: op (j<-i) feeds every op leaving node j; node 3 feeds output."""
    size = len(ADJACENCY_NODES)
    adj = np.zeros((size, size), dtype=np.float32)
    for a, (dst, src) in enumerate(EDGES, start=1):
        if src == 0:
            adj[0, a] = 1
        if dst == 3:
            adj[a, size - 1] = 1
        for b, (_, next_src) in enumerate(EDGES, start=1):
            if next_src == dst:
                adj[a, b] = 1
    return adj


def _arch_seed(arch: str) -> int:
    """A stable 63-bit seed derived from the canonical string (independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(arch.encode()).digest()[:8], "big") >> 1


class NasBench201Space(BaseSpace):
    """The NAS-Bench-201 topology space on CIFAR-10 (C=16, N=5), with the official index order."""

    name = "nb201"

    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string (surrounding whitespace removed)."""
        return _format(_parse(arch))

    def ops(self, arch: str) -> tuple[str, ...]:
        """The op on each edge of `arch`, in `EDGES` order."""
        return _parse(arch)

    def index(self, arch: str) -> int:
        """Official NAS-Bench-201 index (0..15624) of `arch`."""
        return _index_of()[self.canonical(arch)]

    def arch(self, index: int) -> str:
        """Canonical string of the architecture at official NAS-Bench-201 `index`."""
        try:
            i = operator.index(index)
        except TypeError:
            raise HwlatError(f"nb201 index must be an integer, got {type(index).__name__} {index!r}") from None
        if isinstance(index, bool) or not 0 <= i < NUM_ARCHS:
            raise HwlatError(f"nb201 index {index!r} out of range (expected 0..{NUM_ARCHS - 1})")
        return _official_order()[i]

    def choices(self) -> dict[str, tuple[str, ...]]:
        """One decision per edge, named ``"dst<-src"``, with the 5 ops as options."""
        return {f"{dst}<-{src}": OPS for dst, src in EDGES}

    def from_choices(self, chosen: Mapping[str, str]) -> str:
        """The cell whose edge ``"dst<-src"`` carries op ``chosen["dst<-src"]``."""
        ops = [chosen.get(f"{dst}<-{src}") for dst, src in EDGES]
        for (dst, src), op in zip(EDGES, ops):
            if op not in OPS:
                raise HwlatError(f"nb201 edge '{dst}<-{src}': op {op!r} unknown (expected one of {', '.join(OPS)})")
        return _format(ops)

    def to_choices(self, arch: str) -> dict[str, str]:
        """The op on each edge of `arch`, keyed like `choices()`."""
        return {f"{dst}<-{src}": op for (dst, src), op in zip(EDGES, _parse(arch))}

    def enumerate(self) -> Iterator[str]:
        """All 15,625 architectures in official index order."""
        return iter(_official_order())

    def __len__(self) -> int:
        return NUM_ARCHS

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """`n` distinct architectures drawn uniformly without replacement (same seed, same list)."""
        try:
            size = operator.index(n)
        except TypeError:
            size = 0
        if isinstance(n, bool) or not 1 <= size <= NUM_ARCHS:
            raise HwlatError(f"nb201 sample size {n!r} must be an integer in 1..{NUM_ARCHS}")
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as error:
            raise HwlatError(f"nb201 sample seed {seed!r} unusable: {error}") from None
        indices = rng.choice(NUM_ARCHS, size=size, replace=False)
        order = _official_order()
        return [order[i] for i in indices]

    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Float32 features, one row per arch.

        - ``"onehot"``: 30 columns; column ``5 * e + k`` is 1 when edge ``EDGES[e]`` carries op ``OPS[k]``.
        - ``"adjacency"``: the 8-node op-on-node graph of HELP/BRP-NAS (nodes `ADJACENCY_NODES`: input, the
          6 edges in `EDGES` order, output): the first 64 columns are the row-major 8x8 adjacency
          (``A[i, j] = 1`` for an edge i -> j), the next 56 the row-major 8x7 one-hot node types over
          `ADJACENCY_NODE_TYPES`. The adjacency is the unpruned DAG, the same for every cell (BRP-NAS also
          drops `none` nodes and bypasses `skip_connect` nodes); the node types carry the cell.
        """
        if kind not in _ENCODINGS:
            raise HwlatError(f"nb201 encoding kind {kind!r} unknown (expected one of {', '.join(_ENCODINGS)})")
        if isinstance(archs, str):
            raise HwlatError("nb201 encode expects a sequence of arch strings, got a single string")
        return _ENCODINGS[kind]([_parse(a) for a in archs])

    def build(self, arch: str):  # -> torch.nn.Module
        """The NAS-Bench-201 CIFAR-10 network of `arch`, weights seeded from the arch, in eval mode."""
        import torch

        from hwlat.spaces._nb201_model import TinyNetwork

        canonical = self.canonical(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_arch_seed(canonical))
            model = TinyNetwork(_parse(canonical), EDGES)
        return model.eval()

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """CIFAR-10 images: (batch, 3, 32, 32)."""
        return (batch_size, 3, 32, 32)

    def flops(self, arch: str) -> int:
        """Conv and linear multiply-adds at batch 1 (see `count_flops`), cached per arch."""
        return _flops(self.canonical(arch))

    def params(self, arch: str) -> int:
        """Trainable parameters including BatchNorm affine terms, as NAS-Bench-201 reports them."""
        return _params(self.canonical(arch))


def _encode_onehot(cells: list[tuple[str, ...]]) -> np.ndarray:
    """Edge-by-op one-hot rows (see `NasBench201Space.encode`)."""
    out = np.zeros((len(cells), len(EDGES) * len(OPS)), dtype=np.float32)
    for row, ops in enumerate(cells):
        for e, op in enumerate(ops):
            out[row, e * len(OPS) + OPS.index(op)] = 1
    return out


def _encode_adjacency(cells: list[tuple[str, ...]]) -> np.ndarray:
    """Flattened op-on-node adjacency plus one-hot node types (see `NasBench201Space.encode`)."""
    adj = _adjacency().ravel()
    out = np.zeros((len(cells), adj.size + len(ADJACENCY_NODES) * len(ADJACENCY_NODE_TYPES)), dtype=np.float32)
    out[:, : adj.size] = adj
    for row, ops in enumerate(cells):
        types = ["input", *ops, "output"]
        for node, op in enumerate(types):
            out[row, adj.size + node * len(ADJACENCY_NODE_TYPES) + ADJACENCY_NODE_TYPES.index(op)] = 1
    return out


_ENCODINGS = {"onehot": _encode_onehot, "adjacency": _encode_adjacency}


@functools.lru_cache(maxsize=4096)
def _flops(canonical: str) -> int:
    from hwlat.spaces._counting import count_flops

    space = NasBench201Space()
    return count_flops(space.build(canonical), space.input_shape(1))


@functools.lru_cache(maxsize=4096)
def _params(canonical: str) -> int:
    from hwlat.spaces._counting import count_params

    return count_params(NasBench201Space().build(canonical))

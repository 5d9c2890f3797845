"""Merkle tree maths of a transparency log: RFC 9162 (CT 2.0) §2.1 hashing, proofs, verification.

Storage model: a log keeps only the *perfect* subtrees (2**level leaves starting at a multiple
of 2**level). They are final once complete, so a database can store them append-only
(:func:`completed_subtrees` says which ones an append completes). Every other node an RFC proof
needs lies on the imperfect right edge of a tree and is folded from a few perfect subtrees.
Proof builders first list every (level, index) they need, fetch them in one ``subtrees`` call
(one database round trip), then hash.

Hashes are parameterised by a :mod:`hashlib` name ("sha256" as in CT, or "sm3" for GM/T
deployments); every hash is raw ``bytes``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from trust.errors import (
    ConfigurationError,
    MalformedInputError,
    MerkleProofError,
    UnsupportedAlgorithmError,
)

__all__ = [
    "MemoryTree",
    "SubtreeSource",
    "completed_subtrees",
    "consistency_proof",
    "empty_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

_LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1: domain separation, so a leaf never passes for a node
_NODE_PREFIX = b"\x01"

_Digest = Callable[[bytes], bytes]
_Node = tuple[int, int]  # (level, index) of a perfect subtree
_Range = tuple[int, int]  # leaves [start, end) of an RFC tree node


@functools.cache
def _hasher(hash_name: str) -> tuple[_Digest, int]:
    """A one-shot digest function and its size; copying a primed object beats ``hashlib.new``."""
    try:
        proto = hashlib.new(hash_name)
    except (ValueError, TypeError) as exc:
        raise UnsupportedAlgorithmError(f"unknown hash algorithm {hash_name!r}") from exc
    if proto.name.startswith("shake") or proto.digest_size <= 0:
        raise UnsupportedAlgorithmError(f"{hash_name!r} has no fixed digest size")

    def digest(data: bytes) -> bytes:
        h = proto.copy()
        h.update(data)
        return h.digest()

    return digest, proto.digest_size


def leaf_hash(data: bytes, hash_name: str = "sha256") -> bytes:
    """MTH of a one-leaf tree: H(0x00 || data)."""
    return _hasher(hash_name)[0](_LEAF_PREFIX + data)


def node_hash(left: bytes, right: bytes, hash_name: str = "sha256") -> bytes:
    """An interior node: H(0x01 || left || right)."""
    return _hasher(hash_name)[0](_NODE_PREFIX + left + right)


def empty_root(hash_name: str = "sha256") -> bytes:
    """MTH of the empty tree: H() of nothing at all (no prefix)."""
    return _hasher(hash_name)[0](b"")


class SubtreeSource(Protocol):
    """Where proofs read perfect subtree hashes from (a database table, :class:`MemoryTree`).

    A source may also define ``subtrees(self, wanted: Sequence[tuple[int, int]]) -> list[bytes]``
    returning the hashes in the order asked; when it does, every function here makes exactly one
    such call per root or proof instead of one ``subtree`` call per node.
    """

    def subtree(self, level: int, index: int) -> bytes:
        """Root of the perfect subtree over leaves [index * 2**level, (index + 1) * 2**level)."""
        ...


def completed_subtrees(leaf_index: int) -> list[tuple[int, int]]:
    """The perfect subtrees that appending leaf ``leaf_index`` completes, by ascending level.

    (0, leaf_index) is the leaf itself; each next entry is the parent of the previous one, made
    complete because the previous one was a right child. Storing them in this order, each as
    ``node_hash(subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1))``, finds both
    children already stored, so a store maintains every perfect subtree with appends only.
    """
    _check_non_negative(leaf_index=leaf_index)
    completed = [(0, leaf_index)]
    level, index = 0, leaf_index
    while index & 1:
        level, index = level + 1, index >> 1
        completed.append((level, index))
    return completed


def root(size: int, source: SubtreeSource, hash_name: str = "sha256") -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 §2.1.1)."""
    _check_non_negative(size=size)
    if size == 0:
        return empty_root(hash_name)
    return _hash_ranges([(0, size)], source, hash_name)[0]


def inclusion_proof(
    index: int, size: int, source: SubtreeSource, hash_name: str = "sha256"
) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1), leaf first."""
    _check_non_negative(index=index, size=size)
    if index >= size:
        raise MalformedInputError(f"leaf index {index} is outside a tree of {size} leaves")
    siblings: list[_Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            siblings.append((mid, end))
            end = mid
        else:
            siblings.append((start, mid))
            start = mid
    siblings.reverse()  # found top down; the RFC lists them from the leaf up
    return _hash_ranges(siblings, source, hash_name)


def consistency_proof(
    old_size: int, new_size: int, source: SubtreeSource, hash_name: str = "sha256"
) -> list[bytes]:
    """Proof that the first ``old_size`` leaves are a prefix of ``new_size`` (RFC 9162 §2.1.4.1)."""
    _check_non_negative(old_size=old_size, new_size=new_size)
    if old_size == 0:
        raise MalformedInputError("a consistency proof needs old_size > 0")
    if old_size > new_size:
        raise MalformedInputError(f"old_size {old_size} is larger than new_size {new_size}")
    # SUBPROOF(m, D[start:end], whole), unrolled; m is old_size - start throughout.
    nodes: list[_Range] = []
    start, end, whole = 0, new_size, True
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            nodes.append((mid, end))
            end = mid
        else:
            nodes.append((start, mid))
            start, whole = mid, False
    if not whole:
        nodes.append((start, end))  # the old tree's own node, which the verifier cannot know
    nodes.reverse()
    return _hash_ranges(nodes, source, hash_name)


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    hash_name: str = "sha256",
) -> None:
    """Check that ``leaf`` (a :func:`leaf_hash`, not the entry) sits at ``index`` under ``root``.

    RFC 9162 §2.1.3.2. Every failure, including sizes a log could never have signed, raises
    :class:`MerkleProofError`: the inputs come from the log being audited.
    """
    digest, digest_size = _hasher(hash_name)
    if index < 0 or size < 0:
        raise MerkleProofError(f"negative leaf index {index} or tree size {size}")
    if index >= size:
        raise MerkleProofError(f"leaf index {index} is outside a tree of {size} leaves")
    _check_hash_lengths(digest_size, proof, leaf_hash=leaf, root=root)
    sides = _inclusion_sides(index, size)
    if len(proof) != len(sides):
        raise MerkleProofError(
            f"inclusion proof has {len(proof)} hashes; leaf {index} of a tree of {size} "
            f"needs {len(sides)}"
        )
    r = leaf
    for p, p_is_left in zip(proof, sides, strict=True):
        r = digest(_NODE_PREFIX + p + r) if p_is_left else digest(_NODE_PREFIX + r + p)
    if r != root:
        raise MerkleProofError(
            f"inclusion proof for leaf {index} does not lead to the root of tree size {size}"
        )


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    hash_name: str = "sha256",
) -> None:
    """Check that the tree ``old_root`` of ``old_size`` is a prefix of ``new_root`` (§2.1.4.2).

    Equal sizes need an empty proof and equal roots; every tree extends the empty tree, whose
    root must then be :func:`empty_root`. Every failure raises :class:`MerkleProofError`.
    """
    digest, digest_size = _hasher(hash_name)
    if old_size < 0 or new_size < 0:
        raise MerkleProofError(f"negative tree size {old_size} or {new_size}")
    if old_size > new_size:
        raise MerkleProofError(f"tree size went back from {old_size} to {new_size}")
    _check_hash_lengths(digest_size, proof, old_root=old_root, new_root=new_root)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise MerkleProofError(
                f"consistency proof from size {old_size} to {new_size} must be empty"
            )
        if old_size == 0 and old_root != empty_root(hash_name):
            raise MerkleProofError("old root is not the root of the empty tree")
        if old_size == new_size and old_root != new_root:
            raise MerkleProofError(f"two different roots for tree size {new_size}")
        return
    # When old_size is a power of two the old tree is a node of the new one, and its root is
    # the proof's implicit first element (RFC 9162 §2.1.4.2 step 2).
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    sides = _consistency_sides(old_size, new_size)
    if len(path) != len(sides) + 1:
        expected = len(sides) + 1 - (len(path) - len(proof))
        raise MerkleProofError(
            f"consistency proof from size {old_size} to {new_size} has {len(proof)} hashes, "
            f"needs {expected}"
        )
    fr = sr = path[0]
    for c, c_is_left in zip(path[1:], sides, strict=True):
        if c_is_left:
            fr = digest(_NODE_PREFIX + c + fr)
            sr = digest(_NODE_PREFIX + c + sr)
        else:
            sr = digest(_NODE_PREFIX + sr + c)
    if fr != old_root:
        raise MerkleProofError(f"consistency proof does not lead to the root of size {old_size}")
    if sr != new_root:
        raise MerkleProofError(f"consistency proof does not lead to the root of size {new_size}")


class MemoryTree:
    """An append-only tree held in memory, one list of hashes per level (tests, benchmarks).

    It keeps exactly what a database would (the perfect subtrees) and answers proofs through
    the same functions, so it doubles as the reference for a store's behaviour.
    """

    def __init__(self, hash_name: str = "sha256") -> None:
        self.hash_name = hash_name
        self._digest, self._digest_size = _hasher(hash_name)
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append an entry; returns its leaf index."""
        return self.append_leaf_hash(self._digest(_LEAF_PREFIX + data))

    def append_leaf_hash(self, h: bytes) -> int:
        """Append an already hashed leaf (what a log that hashed the entry elsewhere holds)."""
        if len(h) != self._digest_size:
            raise MalformedInputError(
                f"a {self.hash_name} leaf hash is {self._digest_size} bytes, got {len(h)}"
            )
        levels, digest = self._levels, self._digest
        index = len(levels[0])
        levels[0].append(h)
        for level, i in completed_subtrees(index)[1:]:
            if level == len(levels):
                levels.append([])
            below = levels[level - 1]
            levels[level].append(digest(_NODE_PREFIX + below[2 * i] + below[2 * i + 1]))
        return index

    def subtree(self, level: int, index: int) -> bytes:
        if not (0 <= level < len(self._levels) and 0 <= index < len(self._levels[level])):
            raise MalformedInputError(f"no complete subtree at level {level}, index {index}")
        return self._levels[level][index]

    def subtrees(self, wanted: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.subtree(level, index) for level, index in wanted]

    def root(self) -> bytes:
        """The current tree head's root hash."""
        return root(self.size, self, self.hash_name)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        self._check_size(size)
        return inclusion_proof(index, size, self, self.hash_name)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        self._check_size(new)
        return consistency_proof(old, new, self, self.hash_name)

    def _check_size(self, size: int) -> None:
        if size > self.size:
            raise MalformedInputError(f"tree size {size} is beyond the {self.size} leaves held")


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n >= 2): where RFC 9162 splits a node."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_cover(start: int, end: int) -> list[_Node]:
    """The perfect subtrees, left to right, whose fold is the RFC node over [start, end).

    Holds for RFC nodes only: ``start`` is aligned to the node's largest power-of-two part,
    so the binary digits of ``end - start`` give aligned perfect subtrees.
    """
    cover = []
    while start < end:
        level = (end - start).bit_length() - 1
        cover.append((level, start >> level))
        start += 1 << level
    return cover


def _hash_ranges(ranges: Sequence[_Range], source: SubtreeSource, hash_name: str) -> list[bytes]:
    """Hash of each RFC node in ``ranges``, with every perfect subtree fetched in one call."""
    digest = _hasher(hash_name)[0]
    covers = [_perfect_cover(start, end) for start, end in ranges]
    wanted = list(dict.fromkeys(node for cover in covers for node in cover))
    fetched = dict(zip(wanted, _fetch(source, wanted), strict=True))
    hashes = []
    for cover in covers:
        h = fetched[cover[-1]]
        for node in reversed(cover[:-1]):  # the right edge folds right to left
            h = digest(_NODE_PREFIX + fetched[node] + h)
        hashes.append(h)
    return hashes


def _fetch(source: SubtreeSource, wanted: list[_Node]) -> list[bytes]:
    if not wanted:
        return []
    batch: Callable[[Sequence[_Node]], list[bytes]] | None = getattr(source, "subtrees", None)
    if batch is None:
        return [source.subtree(level, index) for level, index in wanted]
    got = list(batch(wanted))
    if len(got) != len(wanted):
        raise ConfigurationError(f"subtree source returned {len(got)} hashes for {len(wanted)}")
    return got


def _inclusion_sides(index: int, size: int) -> list[bool]:
    """Per audit-path element, whether it is the left sibling (RFC 9162 §2.1.3.2 step 4)."""
    fn, sn = index, size - 1
    sides = []
    while sn > 0:
        sides.append(bool(fn & 1) or fn == sn)
        if not fn & 1 and fn == sn:
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    return sides


def _consistency_sides(old_size: int, new_size: int) -> list[bool]:
    """Per path element after the first, whether it is a left sibling (§2.1.4.2 steps 3-6)."""
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return _inclusion_sides(fn, sn + 1)


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise MalformedInputError(f"{name} must not be negative, got {value}")


def _check_hash_lengths(digest_size: int, proof: Sequence[bytes], **named: bytes) -> None:
    """Wrong-sized hashes fail here with a clear message rather than as a root mismatch."""
    for name, value in named.items():
        if len(value) != digest_size:
            raise MerkleProofError(f"{name} is {len(value)} bytes, a hash is {digest_size}")
    for i, p in enumerate(proof):
        if len(p) != digest_size:
            raise MerkleProofError(f"proof[{i}] is {len(p)} bytes, a hash is {digest_size}")

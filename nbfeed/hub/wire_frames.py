"""Data frames of wire protocol v1, built so that a batch is serialized once for every socket.

A :class:`~.outbox.StreamBatch` reaches every subscriber of its stream as the same object. Its
JSON fragment is computed once by the batch itself (``json_rows()``); its binary block
(:mod:`nbfeed.wire_binary`) is computed once per hub here (:class:`SharedBlocks`, found with
:func:`shared_blocks`). What each socket adds to those shared bytes is its subscription id and
one join of the pieces into its frame - a single copy, no re-serialization.

A batch that came as columns is encoded from them (its dicts are never built for this); one
that came as rows is encoded from its rows directly when they are plain, else from
``batch.columns``.

Failure behaviour: a batch whose rows cannot become columns or JSON is not encoded (``None``,
logged once per batch); the session sends what it can, so one bad batch never stalls a socket.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from typing import Any

from ..columns import BadRows, Columns
from ..wire_binary import Block, encode_block, encode_rows_block
from .outbox import StreamBatch

log = logging.getLogger("nbfeed.wire")

_DATA_START = b'{"type":"data_update","id":'
_ROWS_START = b',"rows":['
_END = b"]}"
_COMMA = b","


def json_fragment(batch: StreamBatch) -> bytes:
    """The batch's JSON rows fragment (computed once by the batch), or ``b""`` (logged) for
    rows JSON cannot hold."""
    try:
        return batch.json_rows()
    except ValueError as exc:
        log.warning("rows of %s/%s/%s dropped: %s", batch.source, batch.symbol, batch.interval,
                    exc)
        return b""


def json_data_frame(id_json: bytes, batches: list[StreamBatch]) -> bytes | None:
    """``{"type":"data_update","id":...,"rows":[...]}`` of ``batches``, joined in one copy;
    None when no batch has rows JSON can hold."""
    pieces = [_DATA_START, id_json, _ROWS_START]
    first = True
    for batch in batches:
        part = json_fragment(batch)
        if not part:
            continue
        if not first:
            pieces.append(_COMMA)
        pieces.append(part)
        first = False
    if first:
        return None
    pieces.append(_END)
    return b"".join(pieces)


class SharedBlocks:
    """Binary blocks of recent batches of one hub, each encoded by the first socket that needs
    it and reused by the others.

    Keyed by the batch object (held, so its id is not reused while cached). Holding a batch
    holds its rows, so the cache is bounded by rows as well as batches. ``max_rows`` must
    cover how far apart in time the sockets take the same batch: at 100 sockets reading 200k
    rows/s each, 20k rows (0.1 s) shared almost nothing and every socket encoded every batch
    (13 us of server CPU per row delivered); 200k rows (about 13 MB of blocks) shares them.
    Batches still waiting in some outbox are held by it anyway. Oldest dropped first; a socket
    farther behind re-encodes, it never gets another batch's bytes. Use it on the hub's event
    loop only."""

    def __init__(self, max_batches: int = 16_384, max_rows: int = 200_000) -> None:
        self.max_batches = max_batches
        self.max_rows = max_rows
        self._blocks: OrderedDict[int, tuple[StreamBatch, Block | None, int]] = OrderedDict()
        self._rows = 0
        self.encoded = 0  # how many blocks were encoded (a measure of the sharing)

    def cached(self, batch: StreamBatch) -> bool:
        """Whether the batch's block (or its failure) is already known."""
        hit = self._blocks.get(id(batch))
        return hit is not None and hit[0] is batch

    def merged(self, batches: list[StreamBatch]) -> Block | None:
        """One block of the rows of several small batches of one socket (a ``symbol`` column
        names each row's symbol), not cached: what a socket whose outbox conflated gets - its
        batches are its own, and one encoding beats one per batch. None if they cannot be
        encoded together (the caller encodes them one by one)."""
        rows = [row for batch in batches for row in batch.rows]
        try:
            return encode_block(Columns.from_rows(rows, batches[0].symbol))
        except (BadRows, ValueError):
            return None

    def block(self, batch: StreamBatch) -> Block | None:
        """The batch's binary block, or None when its rows cannot be encoded (the caller sends
        them as JSON)."""
        hit = self._blocks.get(id(batch))
        if hit is not None and hit[0] is batch:
            return hit[1]
        try:
            block: Block | None = None
            if not batch.columnar:  # rows only: the cheap way if it can
                block = encode_rows_block(batch.rows, batch.symbol)
            if block is None:
                block = encode_block(batch.columns)
        except (BadRows, ValueError) as exc:
            log.warning("rows of %s/%s/%s go out as JSON: %s", batch.source, batch.symbol,
                        batch.interval, exc)
            block = None
        self.encoded += 1
        blocks = self._blocks
        if hit is not None:  # the id of a batch gone from the hub, reused: forget it
            self._rows -= hit[2]
        rows = len(batch)  # never builds the dicts of a columnar batch
        blocks[id(batch)] = (batch, block, rows)
        self._rows += rows
        while len(blocks) > 1 and (len(blocks) > self.max_batches or self._rows > self.max_rows):
            self._rows -= blocks.popitem(last=False)[1][2]  # O(1), unlike a dict's first key
        return block


_shared: weakref.WeakKeyDictionary[Any, SharedBlocks] = weakref.WeakKeyDictionary()


def shared_blocks(hub: Any) -> SharedBlocks:
    """The :class:`SharedBlocks` of ``hub`` (made on first use; gone with the hub)."""
    blocks = _shared.get(hub)
    if blocks is None:
        blocks = _shared[hub] = SharedBlocks()
    return blocks

"""Arithmetic on half-open time spans ``[start, end)`` in epoch ms.

The history cache records which parts of a series it holds completely as a sorted list of
disjoint spans; these functions keep that list normalized (sorted, no overlaps, adjacent spans
merged) and answer "what is missing from this request". They are pure and never raise on empty
or reversed input: an empty or reversed span simply contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

Span = tuple[int, int]


def normalize(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint spans covering the same times; touching spans are merged into one."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def add(covered: list[Span], span: Span) -> list[Span]:
    """``covered`` (normalized) with ``span`` added, normalized."""
    return normalize([*covered, span])


def subtract(span: Span, covered: Iterable[Span]) -> list[Span]:
    """The parts of ``span`` that no span of ``covered`` (normalized) contains, in time order."""
    start, end = span
    out: list[Span] = []
    for c_start, c_end in covered:
        if c_end <= start:
            continue
        if c_start >= end:
            break
        if c_start > start:
            out.append((start, c_start))
        start = max(start, c_end)
        if start >= end:
            return out
    if start < end:
        out.append((start, end))
    return out


def subtract_all(spans: Iterable[Span], covered: Iterable[Span]) -> list[Span]:
    """Every part of ``spans`` not contained in ``covered`` (either may be unnormalized)."""
    holes = normalize(covered)
    out: list[Span] = []
    for span in normalize(spans):
        out.extend(subtract(span, holes))
    return out


def overlaps(a: Span, b: Span) -> bool:
    """True when the two spans share at least one millisecond."""
    return a[0] < b[1] and b[0] < a[1]


def touching(covered: Iterable[Span], t: int) -> Span | None:
    """The span of ``covered`` that contains ``t`` or ends exactly at ``t``, if any."""
    for span in covered:
        if span[0] <= t <= span[1]:
            return span
    return None

"""OffsetContinuity: records reach the processor without holes, or a hole is known to be real.

Records can go missing between fetch and agent: faust drops the fetched records of a partition
that is paused while the fetch is handed out. Applying the records after such a hole would lose
the ones in it for good (the stored offset moves past them). So the worker cuts the batch at the
hole and seeks the partition back. A hole that is really in the log (retention, compaction,
transaction markers) shows up again at the same place right after the seek, and is then
accepted.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import Enum


class Continuity(Enum):
    """What to do with a fetched record, given the next offset expected."""

    NEXT = "next"  # the expected record: apply it
    APPLIED = "applied"  # at or below the expected one: already applied, the processor skips it
    HOLE = "hole"  # past the expected one, first time: drop it, seek back to the expected one
    GONE = "gone"  # the same hole again after the seek: the records are not in the log


class OffsetContinuity:
    """Remembers, per input partition, the last hole seen, to tell a dropped fetch from a gap
    in the log.

    >>> c = OffsetContinuity()
    >>> c.check("t-0", expected=5, offset=5)
    <Continuity.NEXT: 'next'>
    >>> c.check("t-0", expected=6, offset=9)  # records 6..8 did not arrive: seek back to 6
    <Continuity.HOLE: 'hole'>
    >>> c.check("t-0", expected=6, offset=9)  # after the seek, 9 comes first again: 6..8 are gone
    <Continuity.GONE: 'gone'>
    """

    def __init__(self) -> None:
        self._holes: dict[Hashable, tuple[int, int]] = {}

    def check(self, partition: Hashable, expected: int, offset: int) -> Continuity:
        """Classify ``offset`` of ``partition`` when ``expected`` is the next offset to apply."""
        if offset < expected:
            return Continuity.APPLIED
        if offset == expected:
            self._holes.pop(partition, None)
            return Continuity.NEXT
        if self._holes.get(partition) == (expected, offset):
            del self._holes[partition]
            return Continuity.GONE
        self._holes[partition] = (expected, offset)
        return Continuity.HOLE

    def reset(self) -> None:
        """Forget every hole (a rebalance repositions every partition)."""
        self._holes.clear()

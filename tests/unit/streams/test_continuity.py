"""OffsetContinuity: a dropped fetch is re-read, a real gap in the log is accepted once."""

from __future__ import annotations

from streams.continuity import Continuity, OffsetContinuity


def deliver(c: OffsetContinuity, log: list[int], fetches: list[list[int]]) -> list[int]:
    """Feed fetched offsets like the worker does: apply in order, cut the batch at a hole and
    seek back (the next fetch then starts at the expected offset, or where the log resumes)."""
    applied: list[int] = []
    expected = 0
    for fetched in fetches:
        for offset in fetched:
            verdict = c.check("p0", expected, offset)
            if verdict is Continuity.HOLE:
                break  # seek back to `expected`
            if verdict is not Continuity.APPLIED:
                applied.append(offset)
                expected = offset + 1
    assert all(o in log for o in applied)
    return applied


def test_records_dropped_between_fetch_and_agent_are_fetched_again() -> None:
    c = OffsetContinuity()
    log = list(range(10))
    # 3..5 fetched while the partition was paused and dropped; after the seek they come back
    applied = deliver(c, log, [[0, 1, 2, 6, 7], [3, 4, 5, 6, 7, 8, 9]])
    assert applied == log


def test_a_gap_that_is_really_in_the_log_is_accepted_after_one_refetch() -> None:
    c = OffsetContinuity()
    log = [0, 1, 2, 7, 8, 9]  # 3..6 compacted away (or transaction markers)
    applied = deliver(c, log, [[0, 1, 2, 7, 8], [7, 8, 9]])
    assert applied == log


def test_a_different_hole_is_not_taken_for_the_remembered_one() -> None:
    c = OffsetContinuity()
    assert c.check("p0", 3, 7) is Continuity.HOLE
    assert c.check("p0", 3, 8) is Continuity.HOLE  # leftovers of the old fetch: still not gone
    assert c.check("p0", 3, 3) is Continuity.NEXT  # the re-fetch arrived
    assert c.check("p0", 4, 8) is Continuity.HOLE  # the old hole was forgotten


def test_partitions_are_independent_and_reset_forgets_holes() -> None:
    c = OffsetContinuity()
    assert c.check("a", 0, 5) is Continuity.HOLE
    assert c.check("b", 0, 5) is Continuity.HOLE
    assert c.check("a", 0, 5) is Continuity.GONE
    c.reset()
    assert c.check("b", 0, 5) is Continuity.HOLE


def test_records_at_or_below_the_expected_offset_are_already_applied() -> None:
    c = OffsetContinuity()
    assert c.check("p0", 10, 9) is Continuity.APPLIED
    assert c.check("p0", 10, 0) is Continuity.APPLIED

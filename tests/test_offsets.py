"""The offset tracker: commits never pass a group of letters that is still open."""

from __future__ import annotations

from offerletters.queue.offsets import OffsetTracker


def test_an_offset_moves_only_past_a_finished_prefix() -> None:
    """A later group finishing first commits nothing until the earlier one is done."""
    tracker: OffsetTracker[int] = OffsetTracker()
    first = tracker.add(0, next_offset=10)
    second = tracker.add(0, next_offset=20)

    tracker.finish(second)
    early = tracker.take_committable()
    tracker.finish(first)
    late = tracker.take_committable()

    assert early == {}
    assert late == {0: 20}


def test_partitions_are_tracked_apart() -> None:
    """An open group in one partition does not hold back another partition."""
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.add(0, next_offset=5)
    other = tracker.add(1, next_offset=7)

    tracker.finish(other)

    assert tracker.take_committable() == {1: 7}
    assert tracker.unfinished() == 1
    assert tracker.unfinished([1]) == 0


def test_committable_offsets_are_handed_out_once() -> None:
    """After an offset was taken for commit, it is not offered again."""
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.finish(tracker.add(3, next_offset=42))

    assert tracker.take_committable() == {3: 42}
    assert tracker.take_committable() == {}


def test_forgotten_partitions_leave_nothing_behind() -> None:
    """A revoked partition's open groups and ready offsets are dropped."""
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.add(0, next_offset=5)
    tracker.finish(tracker.add(1, next_offset=9))

    tracker.forget([0, 1])

    assert tracker.unfinished() == 0
    assert tracker.take_committable() == {}

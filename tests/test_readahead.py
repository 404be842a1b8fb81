"""Reading ahead in a thread: same items, same order, errors where they happened, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from batch.readahead import ReadAhead


def test_items_come_in_order_and_then_stop() -> None:
    """Every item of the source, in its order, then StopIteration (and again after that)."""
    ahead = ReadAhead(iter(range(100)))
    assert list(ahead) == list(range(100))
    assert list(ahead) == []


def test_an_error_in_the_source_is_raised_at_its_item() -> None:
    """The items before a failure arrive first; the source's own exception follows."""

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("row 3 is broken")

    ahead = ReadAhead(failing())
    assert next(ahead) == 1
    assert next(ahead) == 2
    with pytest.raises(ValueError, match="row 3 is broken"):
        next(ahead)


def test_the_thread_reads_at_most_depth_items_ahead_and_stops_when_closed() -> None:
    """Memory stays bounded: the source is not drained ahead of the caller, and closing ends
    the thread without reading the rest."""
    taken: list[int] = []

    def counted() -> Iterator[int]:
        for item in range(1_000):
            taken.append(item)
            yield item

    before = set(threading.enumerate())
    with ReadAhead(counted(), depth=2) as ahead:
        assert next(ahead) == 0
        time.sleep(0.3)
        # One item handed over, two queued, one more made and waiting for room.
        assert len(taken) <= 4
    time.sleep(0.3)
    assert len(taken) <= 4
    assert set(threading.enumerate()) <= before

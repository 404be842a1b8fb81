"""Reading ahead: the next items of an iterator made in a thread while the caller uses the last.

Writing a results file reads the catalog again (Arrow's CSV reader, outside the GIL) while it
reads every row's outcome from the state: with the catalog read ahead, the two share the cores.
Planning does not read ahead: resolving a batch is Python work, which contends for the GIL with
the planner's own (a million-row nightly plan was about a second slower, measured side by side).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class ReadAhead(Generic[T]):
    """Iterates `source` in a daemon thread, at most `depth` items ahead of the caller.

    An exception raised by the source is raised to the caller at the item where it happened.
    `close()` (or leaving a `with` block) stops the thread at its next item.
    """

    def __init__(self, source: Iterable[T], depth: int = 1) -> None:
        self._items: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(source,), name="read-ahead", daemon=True
        )
        self._thread.start()

    def _fill(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put(item, None):
                    return
        except BaseException as exc:  # handed to the caller, who decides
            self._put(None, exc)
            return
        self._put(_END, None)

    def _put(self, item: object, error: BaseException | None) -> bool:
        while not self._closed.is_set():
            try:
                self._items.put((item, error), timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._closed.is_set():
            raise StopIteration
        item, error = self._items.get()
        if error is not None:
            self.close()
            raise error
        if item is _END:
            self.close()
            raise StopIteration
        return item  # type: ignore[return-value]  # only the source's items besides _END

    def close(self) -> None:
        self._closed.set()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

"""Run an iterator in a background thread, handing its items over through a bounded queue.

The consumer gets the same items in the same order; exceptions raised by the producer are re-raised
in the consumer; closing the consumer (break, garbage collection) stops and joins the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def in_background(make_iterator: Callable[[], Iterator[T]], depth: int, name: str) -> Iterator[T]:
    """Items of `make_iterator()`, produced up to `depth` ahead in a thread called `name`."""
    assert depth >= 1, f"depth must be ≥ 1, got {depth}"
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = make_iterator()
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(_Failure(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()

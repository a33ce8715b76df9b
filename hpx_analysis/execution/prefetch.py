"""Run a loading function ahead of its consumer, in order, on a few threads.

Decoding and resizing an image (PIL, torchvision) releases the GIL for most of its time,
so threads overlap it with the model's work on an accelerator: while the GPU computes one
batch, the next one is read. At most ``ahead`` results are pending at any time, so memory
stays bounded however many items there are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")
R = TypeVar("R")


def prefetched(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int
) -> Iterator[tuple[T, R | None, BaseException | None]]:
    """``(item, fn(item), None)``, or ``(item, None, exception)`` where ``fn`` raised, for
    each item in order. ``workers`` threads compute up to ``ahead`` items in advance;
    ``workers=0`` calls ``fn`` in the caller's thread, one item at a time.

    Stopping early (closing the generator) cancels what has not started and waits for the
    calls in progress."""
    if workers < 0 or ahead < 1:
        raise ValueError(f"need workers >= 0 and ahead >= 1, got workers={workers}, ahead={ahead}")
    if workers == 0:
        for item in items:
            try:
                yield item, fn(item), None
            except Exception as exc:  # handed to the caller, who decides
                yield item, None, exc
        return
    pending: deque[tuple[T, Future]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= ahead:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()


def _result(item, future: Future):
    exc = future.exception()
    return (item, None, exc) if exc is not None else (item, future.result(), None)

"""Reading ahead on threads: order, errors as values, bounded look-ahead, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from hpx_analysis.execution.prefetch import prefetched


class Recorder:
    """A loading function that records how many calls run or wait to be consumed."""

    def __init__(self, fail_on=()):
        self.lock = threading.Lock()
        self.started = []
        self.fail_on = set(fail_on)

    def __call__(self, i):
        with self.lock:
            self.started.append(i)
        time.sleep(0.002 * (i % 3))  # finish out of order
        if i in self.fail_on:
            raise OSError(f"cannot read {i}")
        return i * i


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_order_with_errors_as_values(workers):
    fn = Recorder(fail_on={2, 5})
    out = list(prefetched(fn, range(8), workers=workers, ahead=4))
    assert [item for item, _, _ in out] == list(range(8))
    for item, value, exc in out:
        if item in (2, 5):
            assert value is None and isinstance(exc, OSError) and str(item) in str(exc)
        else:
            assert exc is None and value == item * item


def test_look_ahead_is_bounded():
    fn = Recorder()
    gen = prefetched(fn, range(100), workers=2, ahead=3)
    seen = []
    for item, _, _ in gen:
        seen.append(item)
        time.sleep(0.005)  # give the threads time to run ahead if they could
        with fn.lock:
            assert len(fn.started) <= item + 1 + 3  # consumed + at most `ahead` pending
        if item == 10:
            break
    gen.close()
    with fn.lock:
        assert len(fn.started) <= 11 + 3  # stopping early cancels what had not started
    assert seen == list(range(11))


def test_without_workers_nothing_runs_ahead():
    fn = Recorder()
    gen = prefetched(fn, range(5), workers=0, ahead=4)
    next(gen)
    assert fn.started == [0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        list(prefetched(abs, [1], workers=-1, ahead=2))
    with pytest.raises(ValueError):
        list(prefetched(abs, [1], workers=1, ahead=0))

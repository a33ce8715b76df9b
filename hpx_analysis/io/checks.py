"""Checks of the numbers a public function takes: a count, a size or a seed must be a whole
number (an ``int`` or a NumPy integer; never a bool or a float that would be truncated) in
its range, or the call fails with a message naming the parameter."""

from __future__ import annotations

import numbers

__all__ = ["whole_number", "SEED_RANGE"]

# the seeds torch.manual_seed accepts
SEED_RANGE = (-(2**63), 2**64 - 1)


def whole_number(value: object, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int``, checked.

    Args:
        value: the number passed by the caller.
        name: the parameter's name, for the message.
        minimum: the smallest allowed value (None: no bound).
        maximum: the largest allowed value (None: no bound).

    Returns:
        int: ``value`` as a plain int.

    Raises:
        TypeError: ``value`` is not a whole number (a float such as 1.5 or 2.0, a bool, a string).
        ValueError: ``value`` lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (int), got {value!r} of type {type(value).__name__}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number

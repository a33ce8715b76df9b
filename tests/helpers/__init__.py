"""Helpers of the tests: reference computations, the fast-path switch, distributed workers."""

"""CPU speed paths for frozen HyenaPixel models, apart from the reference code, behind one switch.

``with fast_paths(model):`` swaps the supported modules of ``model`` to fast subclasses
(:mod:`.modules`) when :func:`enabled` (``HPX_ANALYSIS_FAST``, default ``1``). The fast
forwards give the plain results to float32 rounding and fall back to the plain forward
where they do not apply. Paths through private operators (oneDNN's reordered-weight
products, MKL's 2D inverse FFT) are probed once per process at first use (:mod:`.probe`);
:func:`available` and :func:`probe_report` say which work here.

Modules: ``switch`` (the switch), ``probe`` (operator checks), ``modules`` (the fast
classes), ``fixed_weight`` (fixed-weight autograd functions), ``packed_linear`` and
``weight_cache`` (oneDNN products with reordered weights), ``mkl_irfft2`` (MKL's 2D inverse
FFT), ``strided_conv`` (the stem's phase-split input gradient), ``spectrum`` (cached kernel
spectra and the fixed-kernel FFT convolution).
"""

from __future__ import annotations

from . import mkl_irfft2, packed_linear  # noqa: F401  (register their probes)
from .modules import FAST_CLASSES
from .probe import available, probe_report
from .switch import ENV_VAR, enabled, fast_path_record, fast_paths, reset_record, set_enabled

__all__ = [
    "enabled",
    "set_enabled",
    "fast_paths",
    "fast_path_record",
    "reset_record",
    "available",
    "probe_report",
    "FAST_CLASSES",
    "ENV_VAR",
]

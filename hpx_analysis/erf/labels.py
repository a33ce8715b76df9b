"""Run labels: the names in an ERF run's file names, one per model and weights.

A model given once keeps its canonical name as its label (``erf_hpx_former_s18.npy``, as
always). A model given with several weights gets a short weights tag after a dash:
``random``, ``auto``, ``pretrained`` or the checkpoint's file stem
(``erf_resnet18-random.npy``, ``erf_resnet18-epoch10.npy``); labels that would still
collide get ``-2``, ``-3``, ... A weights part that is a folder or a glob
(``hpx_probe=snapshots/*.safetensors``) stands for every checkpoint it matches
(``.safetensors``, ``.pth``, ``.pt``, ``.bin``), in natural order (``epoch2`` before
``epoch10``): an ERF series, one run per checkpoint, labelled by the model and the stem.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunSpec", "expand_model_args", "weights_tag", "assign_labels", "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class RunSpec:
    """One ``--model`` run: the ``NAME=WEIGHTS`` text, its series (the original argument when it
    came from a folder or glob) and checkpoint stem, and the label once assigned."""

    text: str
    series: str | None = None
    checkpoint: str | None = None
    label: str = ""


def _natural(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def expand_model_args(values: list[str]) -> list[RunSpec]:
    """``--model`` values with folder and glob weights expanded into one run per checkpoint.
    A folder or glob that matches no checkpoint raises ValueError.

    Args:
        values: the ``--model`` values (``NAME[=WEIGHTS]``).

    Returns:
        list[RunSpec]: one run per model or checkpoint, not yet labelled.
    """
    runs: list[RunSpec] = []
    for value in values:
        name, sep, weights = str(value).partition("=")
        weights = weights.strip()
        is_glob = any(c in weights for c in "*?[")
        if sep and (is_glob or (weights and Path(weights).expanduser().is_dir())):
            found = (
                [Path(p) for p in glob.glob(str(Path(weights).expanduser()))]
                if is_glob
                else list(Path(weights).expanduser().iterdir())
            )
            files = sorted((p for p in found if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES), key=_natural)
            if not files:
                raise ValueError(f"no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) matches {weights!r}")
            runs.extend(RunSpec(f"{name.strip()}={p}", series=value, checkpoint=p.stem) for p in files)
        else:
            runs.append(RunSpec(value))
    return runs


def weights_tag(weights: str) -> str:
    """A short tag for a weights choice: the mode itself, or a checkpoint's file stem.

    Args:
        weights: the weights part of a model spec.

    Returns:
        str: ``random``, ``auto``, ``pretrained`` or the file stem, safe in file names.
    """
    weights = (weights or "auto").strip()
    tag = Path(weights).stem if weights not in ("auto", "random", "pretrained") else weights
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag) or "weights"


def assign_labels(runs: list[RunSpec], names: list[str]) -> list[RunSpec]:
    """Give every run its label (see the module docstring); ``names`` are the canonical model
    names of ``runs`` in order.

    Args:
        runs: the runs (labelled in place).
        names: their canonical model names.

    Returns:
        list[RunSpec]: ``runs``.

    Raises:
        ValueError: ``names`` is not one name per run (labels would shift).
    """
    if len(runs) != len(names):
        raise ValueError(f"assign_labels needs one name per run: {len(runs)} run(s), {len(names)} name(s)")
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    taken: set[str] = set()
    for run, name in zip(runs, names):
        weights = run.text.partition("=")[2]
        label = name if counts[name] == 1 and run.series is None else f"{name}-{weights_tag(weights)}"
        base, n = label, 2
        while label in taken:
            label, n = f"{base}-{n}", n + 1
        taken.add(label)
        run.label = label
    return runs

"""The global-context probe task: a synthetic classification task generated from a seed.

Each image is grey uniform noise with one solid coloured square (``square`` px, odd) whose
centre lies at Chebyshev distance ``d`` px from the *readout centre*: the input pixel at the
centre of the receptive field of the last feature map's centre unit ``(H // 2, W // 2)``
(pixel ``size // 2 + 1`` for the stride-4, padding-2 stem of the MetaFormer models). The
label is the square's colour (``num_classes`` colours). The model is read out at that unit
(``global_pool="centre"``), so accuracy against ``d`` measures how far its context reaches:
a unit that does not see the square is at chance. Chebyshev distance matches the square
receptive fields of convolutions and the square truncation windows.

Splits are seed streams (``train``, ``val``, ``test``); labels are balanced in every batch.
The test split is a fixed grid: every distance, every class, ``reps`` positions each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["ProbeTask", "ProbeBatch", "COLOURS", "MEAN", "STD", "SPLITS", "probe_task_for"]

# red, green, blue, yellow (RGB in [0, 1])
COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
MEAN, STD = 0.5, 0.25  # images are normalised as (x - MEAN) / STD
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class ProbeBatch:
    """Normalised images ``(N, 3, S, S)``, labels ``(N,)``, distances ``d`` px ``(N,)`` and the
    square centres ``(N, 2)`` (row, col)."""

    images: torch.Tensor
    labels: torch.Tensor
    distances: torch.Tensor
    centres: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> ProbeBatch:
        """The first ``n`` samples."""
        return ProbeBatch(self.images[:n], self.labels[:n], self.distances[:n], self.centres[:n])

    @staticmethod
    def concat(batches: list[ProbeBatch]) -> ProbeBatch:
        """The batches one after the other."""
        fields = ("images", "labels", "distances", "centres")
        return ProbeBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in fields))


@dataclass(frozen=True)
class ProbeTask:
    size: int = 64
    square: int = 5
    num_classes: int = 4
    d_min: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.square % 2 == 0:
            raise ValueError("square side must be odd (centred on a pixel)")
        if not 2 <= self.num_classes <= len(COLOURS):
            raise ValueError(f"num_classes must be 2..{len(COLOURS)}")
        if self.d_max < self.d_min:
            raise ValueError(f"image of {self.size} px leaves no room for d >= {self.d_min}")

    # -- geometry -----------------------------------------------------------------
    @property
    def centre(self) -> int:
        """Row (= column) of the readout centre pixel."""
        return self.size // 2 + 1

    @property
    def d_max(self) -> int:
        """The largest distance at which the square fits on every side."""
        return min(self.centre, self.size - 1 - self.centre) - self.square // 2

    @property
    def distances(self) -> np.ndarray:
        return np.arange(self.d_min, self.d_max + 1)

    def far_quarter(self) -> tuple[float, float]:
        """The far-distance quarter of the ``d`` range, ``[lo, d_max]``."""
        return self.d_max - (self.d_max - self.d_min) / 4.0, float(self.d_max)

    def as_dict(self) -> dict:
        return {**asdict(self), "centre": self.centre, "d_max": self.d_max}

    # -- generation ---------------------------------------------------------------
    def _rng(self, split: str, index: int) -> np.random.Generator:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}")
        return np.random.default_rng([self.seed, SPLITS[split], index])

    def _render(self, rng: np.random.Generator, labels: np.ndarray, dist: np.ndarray) -> ProbeBatch:
        n, s, h = len(labels), self.size, self.square // 2
        side = rng.integers(0, 4, n)  # which side of the ring: top, bottom, left, right
        along = np.array([rng.integers(-d, d + 1) for d in dist]) if n else np.zeros(0, int)
        dr = np.where(side == 0, -dist, np.where(side == 1, dist, along))
        dc = np.where(side == 2, -dist, np.where(side == 3, dist, along))
        rows, cols = self.centre + dr, self.centre + dc
        noise = rng.random((n, 1, s, s), dtype=np.float32)
        img = np.repeat(noise, 3, axis=1)
        colours = np.asarray(COLOURS, dtype=np.float32)
        for i in range(n):
            img[i, :, rows[i] - h : rows[i] + h + 1, cols[i] - h : cols[i] + h + 1] = colours[labels[i]][:, None, None]
        img = (img - MEAN) / STD
        return ProbeBatch(
            torch.from_numpy(img),
            torch.from_numpy(labels.astype(np.int64)),
            torch.from_numpy(dist.astype(np.int64)),
            torch.from_numpy(np.stack([rows, cols], 1).astype(np.int64)),
        )

    def batch(self, split: str, index: int, n: int) -> ProbeBatch:
        """Batch ``index`` of ``split``: ``n`` samples, labels balanced (each class
        ``n // num_classes`` times, the rest drawn), ``d`` uniform over the range."""
        rng = self._rng(split, index)
        labels = np.concatenate(
            [
                np.arange(n - n % self.num_classes) % self.num_classes,
                rng.integers(0, self.num_classes, n % self.num_classes),
            ]
        )
        labels = rng.permutation(labels)
        dist = rng.integers(self.d_min, self.d_max + 1, n)
        return self._render(rng, labels, dist)

    def test_block(self, index: int) -> ProbeBatch:
        """Block ``index`` of the fixed test split: every distance x every class once, at
        positions drawn from the block's own seed stream (the same block for any split length)."""
        d = self.distances
        labels = np.tile(np.arange(self.num_classes), len(d))
        dist = np.repeat(d, self.num_classes)
        return self._render(self._rng("test", index), labels, dist)

    def test_set(self, reps: int = 4) -> ProbeBatch:
        """The fixed test split: every distance x every class, in ``reps`` blocks of random
        positions (block ``r`` is the same for any ``reps > r``, so ``test_set(1)`` is the first
        quarter of ``test_set(4)``)."""
        return ProbeBatch.concat([self.test_block(r) for r in range(reps)])


def probe_task_for(model: torch.nn.Module, seed: int = 0) -> ProbeTask:
    """The probe task a model is trained and tested on: a registered probe model's task is
    rendered at its training resolution (64 px, 128 px for the two-stage probes); any other
    model (a published architecture, a timm model) reads the default 64 px task.

    Args:
        model: a probe model (or any model read out at its centre unit).
        seed: the task's seed (0 for the bundled checkpoints' train and test splits).

    Returns:
        The :class:`ProbeTask` of that size, other fields at their defaults.
    """
    from ..models import PROBES

    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = str(cfg.get("architecture", "")).partition(".")[0]
    size = getattr(model, "img_size", None) if name in PROBES else None
    return ProbeTask(size=int(size), seed=seed) if size is not None else ProbeTask(seed=seed)

"""What every analysis shares: a frozen settings object, the run context and the hooks.

Each analysis has one frozen dataclass of settings (what is computed) deriving from
:class:`Settings`; its :meth:`Settings.describe` is both the record written beside the
results and the guard of a resumed run. :class:`RunContext` says where and how a job runs
(device, processes, output folder, resume, seed, command line) and :class:`Hooks` carries
the callbacks a caller may want (progress, per batch, messages). A job function takes
``(models, images, settings, run, hooks)`` or less; the CLI command and the report call the
same job.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .execution.distributed import DistContext

__all__ = ["Settings", "RunContext", "Hooks", "json_ready"]

S = TypeVar("S", bound="Settings")


def json_ready(value: Any) -> Any:
    """``value`` with enums, paths, tuples, devices and numpy scalars made JSON-ready."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (Path, torch.device)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [json_ready(v) for v in items]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


class Settings:
    """Base of the frozen settings dataclasses (``@dataclass(frozen=True)`` subclasses).

    Args of a subclass: its fields, each a setting of the analysis with its default.
    """

    def describe(self) -> dict:
        """The settings as a JSON-ready dict: the record written beside the results and the
        guard a resumed run is compared with.

        Returns:
            dict: field name -> value (enums as their values, tuples as lists).
        """
        return {f.name: json_ready(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def replace(self: S, **overrides: Any) -> S:
        """A copy with ``overrides`` applied (``dataclasses.replace``), checked.

        Args:
            **overrides: field name -> new value.

        Returns:
            Settings: the new settings object.

        Raises:
            TypeError: an override names no field of these settings (the fields are listed).
        """
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no setting {', '.join(map(repr, unknown))}; "
                f"the settings are {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **overrides)  # type: ignore[type-var]

    @classmethod
    def from_overrides(cls: type[S], settings: S | None = None, **overrides: Any) -> S:
        """``settings`` (default: the defaults) with ``overrides`` applied.

        Args:
            settings: a settings object of this class, or None for the defaults.
            **overrides: field name -> value.

        Returns:
            Settings: the settings to use.

        Raises:
            TypeError: ``settings`` is of another type, or an override names no field.
        """
        if settings is None:
            settings = cls()
        elif not isinstance(settings, cls):
            raise TypeError(f"settings must be a {cls.__name__}, got {type(settings).__name__}")
        return settings.replace(**overrides) if overrides else settings


@dataclass(frozen=True)
class RunContext:
    """Where and how a job runs; none of it changes the numbers of a result.

    Args:
        device: the device the models run on.
        dist: the process group (rank and world size; one process by default).
        out_dir: the output folder a job writes into (None: write nothing).
        resume: continue from a partial state in ``out_dir``.
        seed: the seed of random inits and sampling.
        command: the command line recorded in the outputs.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: DistContext = field(default_factory=DistContext)
    out_dir: Path | None = None
    resume: bool = False
    seed: int = 0
    command: str = ""

    @property
    def is_main(self) -> bool:
        """Whether this process writes the files (rank 0)."""
        return self.dist.is_main

    def describe(self) -> dict:
        """The run's JSON record (device, world size, seed, command)."""
        return {
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "seed": self.seed,
            "command": self.command,
        }


def _ignore(*_args: Any) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """Callbacks of a job; each defaults to doing nothing.

    Args:
        progress: called with the number of items just finished.
        on_start: called with ``(done, todo)`` once a job knows how many items were done
            before (a resumed run) and how many it will compute; also starts a new progress
            task for each map of a job with several.
        on_batch: called with the job's state after each batch (e.g. to save it).
        log: called with a one-line message for the user (notes, warnings).
        task: called with a short title when a job starts a new piece of work.
    """

    progress: Callable[[int], None] = _ignore
    on_start: Callable[[int, int], None] = _ignore
    on_batch: Callable[[Any], None] = _ignore
    log: Callable[[str], None] = _ignore
    task: Callable[[str], None] = _ignore

"""Option definitions and error handling shared by every ``hpx-analyze`` command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hpx_analysis.io.images import ImageInputError, ImageLoadError
from hpx_analysis.io.output import OutputError, check_output_dir, output_lock
from hpx_analysis.io.weights import ModelSpec, WeightsError, parse_model_spec
from hpx_analysis.probe.analysis import images_source
from hpx_analysis.settings import Hooks

__all__ = [
    "Device",
    "split_list",
    "OUT_ROOT",
    "command_line",
    "ModelOption",
    "OutOption",
    "DeviceOption",
    "SeedOption",
    "ImagesOption",
    "NumImagesOption",
    "default_out",
    "output_folder",
    "INTERRUPTED",
    "model_specs",
    "fail",
    "user_errors",
    "progress",
    "stop_progress",
    "job_hooks",
    "stderr_console",
    "stdout_console",
    "wide_console",
]

ModelOption = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        metavar="NAME[=WEIGHTS]",
        help="Model to analyse, repeatable. NAME: a registered name or alias (see `hpx-analyze "
        "models`) or any timm model. WEIGHTS: auto (bundled for probe models; published if cached or "
        "downloadable, else seeded random init), pretrained, random, bundled[:STEP], or a "
        ".safetensors/.pth/.bin file.",
    ),
]
OUT_ROOT = Path("hpx-out")
T = TypeVar("T")


class Device(str, Enum):
    """Where the analysis runs."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


OutOption = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help=f"Output folder (default: {OUT_ROOT}/<command> in the working directory)."),
]
DeviceOption = Annotated[
    Device, typer.Option("--device", case_sensitive=False, help="auto (CUDA if available), cpu or cuda.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for random initialisation and any sampling.")]


def _images_value(text: str) -> str | Path:
    """``--images`` as the jobs take it (:func:`~hpx_analysis.probe.analysis.images_source`);
    the word ``probe`` while ``./probe`` exists fails with one line."""
    try:
        return images_source(text)
    except ValueError as err:
        fail(str(err))


ImagesOption = Annotated[
    Optional[Path],
    typer.Option(
        "--images",
        parser=_images_value,
        metavar="PATH|probe",
        help="ImageFolder tree (e.g. IN-1k val/) or flat folder, read recursively in "
        "sorted order, or the word 'probe' (the probe task's labelled test split; erf, truncation, interactions; "
        "a folder named probe: ./probe). Default: real photographs bundled with scikit-image.",
    ),
]
NumImagesOption = Annotated[
    Optional[int], typer.Option("--num-images", min=1, help="Use the first N images (default: the command's own).")
]

# wide enough that no line is cut where the output is a file or a pipe (rich's default there
# is 80 columns); a terminal keeps its own width, and a COLUMNS setting is honoured
NON_TERMINAL_WIDTH = 1000


def wide_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that wraps at the terminal's width, and not at
    80 columns when the output is not a terminal (a log file, a pipe, a test runner).

    Args:
        stderr: write to stderr instead of stdout.

    Returns:
        Console: the console.
    """
    import os

    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(stderr=stderr, width=NON_TERMINAL_WIDTH)
    return console


stderr_console = wide_console(stderr=True)
stdout_console = wide_console()
INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT), as shells report it


def default_out(command: str, out: Path | None) -> Path:
    """``out`` or ``hpx-out/<command>`` (untracked; only ``report --out figures`` writes the
    committed report)."""
    return out if out is not None else OUT_ROOT / command


def split_list(
    text: str | None, option: str, kind: Callable[[str], T] = str, what: str = "values", length: int | None = None
) -> list[T] | None:
    """The one way commands take lists: ``"0.25, 0.5,1"`` -> ``[0.25, 0.5, 1.0]`` with ``kind``
    applied to each comma-separated item. ``None`` stays ``None``; an empty list, an item
    ``kind`` rejects or a list of the wrong ``length`` fails naming ``option``."""
    if text is None:
        return None
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        fail(f"{option} needs at least one value")
    values = []
    for item in items:
        try:
            values.append(kind(item))
        except ValueError:
            fail(f"{option} expects {what} separated by commas; {item!r} is not one")
    if length is not None and len(values) != length:
        fail(f"{option} expects {length} {what} separated by commas, got {text!r}")
    return values


def command_line() -> str:
    """The command as typed, named ``hpx-analyze`` however it was started (console script,
    ``python -m hpx_analysis.cli.main``), for the records."""
    import sys

    return " ".join(["hpx-analyze"] + sys.argv[1:])


def fail(message: str) -> NoReturn:
    """Print one red error line to stderr and exit with status 2."""
    line = " ".join(str(message).split())
    stderr_console.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


@contextmanager
def output_folder(out: Path, *, enabled: bool = True) -> Iterator[Path]:
    """Check that ``out`` can be created and written, and hold its lock for the block, before
    any work starts; a folder that cannot be used or is in use by another run fails with one
    line. ``enabled=False`` (ranks other than 0, which write nothing) only yields ``out``."""
    if not enabled:
        yield out
        return
    try:
        check_output_dir(out)
        with output_lock(out, command=command_line()):
            yield out
    except OutputError as err:
        fail(str(err))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad model, weights, images, paths, values, output
    folders that cannot be written) into ``fail``, and Ctrl-C into one line and exit status
    130; usable as ``with user_errors():`` or as a decorator ``@user_errors()``."""
    try:
        yield
    except (WeightsError, ImageInputError, ImageLoadError, OutputError, ValueError) as err:
        fail(str(err))
    except FileNotFoundError as err:
        fail(f"file not found: {err.filename or err}")
    except OSError as err:  # e.g. a full disk or a folder made read-only while the run wrote
        fail(f"{err.filename}: {err.strerror or err}" if err.filename else f"{type(err).__name__}: {err}")
    except KeyboardInterrupt:
        stderr_console.print("interrupted", highlight=False)
        raise typer.Exit(code=INTERRUPTED) from None
    except KeyError as err:
        message = err.args[0] if err.args else ""
        if isinstance(message, str) and message.startswith("unknown model"):
            fail(message)
        raise


def model_specs(values: list[str] | None) -> list[ModelSpec]:
    """Parse repeated ``--model`` values; an invalid one fails with its message. Aliases are
    resolved before duplicates are dropped (``-m hpx_s4 -m hpx_former_s4`` is one model)."""
    if not values:
        fail("no model given (use --model NAME[=WEIGHTS])")
    try:
        specs = [parse_model_spec(value) for value in values]
    except WeightsError as err:
        fail(str(err))
    unique = list(dict.fromkeys(specs))
    for spec in unique:
        if specs.count(spec) > 1:
            stderr_console.print(f"note: {spec.name} ({spec.weights}) given {specs.count(spec)} times; analysed once")
    return unique


def progress(transient: bool = False) -> Progress:
    """A progress bar on stderr: spinner, description, bar, M/N, elapsed and ETA."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=transient,
    )


def stop_progress(bar: Progress) -> None:
    """Stop ``bar`` if it was started (rich prints an empty line when stopping one that was not)."""
    if bar.live.is_started:
        bar.stop()


def print_note(message: str) -> None:
    """One message of a job on stderr, as it was written (no markup)."""
    stderr_console.print(escape(message), highlight=False, soft_wrap=True)


@contextmanager
def job_hooks(show_progress: bool = True) -> Iterator[Hooks]:
    """Hooks that print a job's messages on stderr and, with ``show_progress``, show one
    progress bar per task the job starts (``hooks.task``), sized by ``hooks.on_start``."""
    if not show_progress:
        yield Hooks(log=print_note)
        return
    bar = progress()
    try:
        tasks: list = []

        def task(title: str) -> None:
            bar.start()  # shown from the first task on: a check that fails before leaves no empty bar
            tasks.append(bar.add_task(title, total=None))

        def on_start(done: int, todo: int) -> None:
            if not tasks:
                task("")
            bar.update(tasks[-1], total=done + todo, completed=done)

        def advance(n: int) -> None:
            if tasks:
                bar.advance(tasks[-1], n)

        yield Hooks(progress=advance, on_start=on_start, log=print_note, task=task)
    finally:
        stop_progress(bar)

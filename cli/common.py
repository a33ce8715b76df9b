"""Option definitions and error handling shared by every ``hpx-analyze`` command."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from hpx_analysis.io.images import ImageInputError, ImageLoadError
from hpx_analysis.io.weights import ModelSpec, WeightsError, parse_model_spec

__all__ = [
    "ModelOption", "OutOption", "DeviceOption", "SeedOption", "ImagesOption", "NumImagesOption",
    "default_out", "model_specs", "fail", "user_errors", "progress", "stderr_console",
]

ModelOption = Annotated[list[str], typer.Option(
    "--model", "-m", metavar="NAME[=WEIGHTS]",
    help="Model to analyse, repeatable. NAME: a registered name or alias (see `hpx-analyze "
         "models`) or any timm model. WEIGHTS: auto (published if cached or downloadable, else "
         "seeded random init), pretrained, random, or a .safetensors/.pth/.bin file.")]
OutOption = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (default: figures/<command>).")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="auto (CUDA if available), cpu or cuda.")]
SeedOption = Annotated[int, typer.Option(
    "--seed", help="Seed for random initialisation and any sampling.")]
ImagesOption = Annotated[Optional[Path], typer.Option(
    "--images", help="ImageFolder tree (e.g. IN-1k val/) or flat folder, read recursively in "
                     "sorted order. Default: real photographs bundled with scikit-image.")]
NumImagesOption = Annotated[Optional[int], typer.Option(
    "--num-images", min=1, help="Use the first N images (default: the command's own).")]

stderr_console = Console(stderr=True)


def default_out(command: str, out: Path | None) -> Path:
    """``out`` or ``figures/<command>``."""
    return out if out is not None else Path("figures") / command


def fail(message: str) -> NoReturn:
    """Print one red error line to stderr and exit with status 2."""
    line = " ".join(str(message).split())
    stderr_console.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True,
                         highlight=False)
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad model, weights, images, paths, values) into
    ``fail``; usable as ``with user_errors():`` or as a decorator ``@user_errors()``."""
    try:
        yield
    except (WeightsError, ImageInputError, ImageLoadError, ValueError) as err:
        fail(str(err))
    except FileNotFoundError as err:
        fail(f"file not found: {err.filename or err}")
    except KeyError as err:
        message = err.args[0] if err.args else ""
        if isinstance(message, str) and message.startswith("unknown model"):
            fail(message)
        raise


def model_specs(values: list[str] | None) -> list[ModelSpec]:
    """Parse repeated ``--model`` values; an invalid one fails with its message."""
    if not values:
        fail("no model given (use --model NAME[=WEIGHTS])")
    try:
        return [parse_model_spec(value) for value in values]
    except WeightsError as err:
        fail(str(err))


def progress(transient: bool = False) -> Progress:
    """A progress bar on stderr: spinner, description, bar, M/N, elapsed and ETA."""
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=stderr_console, transient=transient,
    )

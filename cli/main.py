"""The ``hpx-analyze`` command-line app: one module per command, registered below."""

from __future__ import annotations

import warnings

import typer

from hpx_analysis.execution.allocator import reuse_freed_memory

app = typer.Typer(
    name="hpx-analyze",
    help="Analysis toolbench for HyenaPixel and other large-kernel / global-convolution vision "
    "models: effective receptive fields, learned kernels, window coverage, truncation.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: flags without a "<bool>" metavar
)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@app.callback()
def main() -> None:
    """Every command takes --model NAME[=WEIGHTS] (repeatable), --out, --device and --seed."""
    warnings.formatwarning = _one_line_warning  # e.g. "published weights unavailable", without source lines
    reuse_freed_memory()  # large activations from the heap, not fresh zero-filled pages (glibc)


# ---- command registration: one import and one line per command -------------------------
from . import coverage as coverage_cmd  # noqa: E402
from . import erf as erf_cmd  # noqa: E402
from . import interactions as interactions_cmd  # noqa: E402
from . import kernels as kernels_cmd  # noqa: E402
from . import models as models_cmd  # noqa: E402
from . import probe as probe_cmd  # noqa: E402
from . import report as report_cmd  # noqa: E402
from . import runtime as runtime_cmd  # noqa: E402
from . import truncation as truncation_cmd  # noqa: E402

app.command("models")(models_cmd.models)
app.command("erf")(erf_cmd.erf)
app.command("kernels")(kernels_cmd.kernels)
app.command("coverage")(coverage_cmd.coverage)
app.command("truncation")(truncation_cmd.truncation)
app.command("runtime")(runtime_cmd.runtime)
app.command("interactions")(interactions_cmd.interactions)
app.command("report")(report_cmd.report)
app.add_typer(probe_cmd.app, name="probe")
# ---- end of command registration ---------------------------------------------------------


if __name__ == "__main__":
    app()

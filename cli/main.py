"""The ``hpx-analyze`` command-line app: one module per command, registered below."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="hpx-analyze",
    help="Analysis toolbench for HyenaPixel and other large-kernel / global-convolution vision "
         "models: effective receptive fields, learned kernels, window coverage, truncation.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Every command takes --model NAME[=WEIGHTS] (repeatable), --out, --device and --seed."""

# ---- command registration: one import and one line per command -------------------------
from . import models as models_cmd  # noqa: E402

app.command("models")(models_cmd.models)
from . import erf as erf_cmd  # noqa: E402

app.command("erf")(erf_cmd.erf)
from . import runtime as runtime_cmd  # noqa: E402

app.command("runtime")(runtime_cmd.runtime)
from . import kernels as kernels_cmd  # noqa: E402

app.command("kernels")(kernels_cmd.kernels)
from . import coverage as coverage_cmd  # noqa: E402

app.command("coverage")(coverage_cmd.coverage)
from . import truncation as truncation_cmd  # noqa: E402

app.command("truncation")(truncation_cmd.truncation)
from . import report as report_cmd  # noqa: E402

app.command("report")(report_cmd.report)
# ---- end of command registration ---------------------------------------------------------


if __name__ == "__main__":
    app()

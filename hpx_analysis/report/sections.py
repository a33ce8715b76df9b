"""The report's sections, as one table: section name -> :class:`Section` (the job that computes
and writes it, its settings made from the :class:`~hpx_analysis.report.settings.ReportSettings`,
its part of ``report.md``, its figure number and title, its models and figure files).

A new section is one entry here plus its markdown renderer. Sections run in the table's
order; ``report.md`` lists them by figure number (sections without one last).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import Hooks, RunContext, Settings
from . import markdown as md
from .interactions_section import (
    INTERACTION_SECTION_FILES,
    interaction_section_settings,
    interactions_markdown,
    run_interaction_section,
)
from .probe_s2_section import (
    PROBE_S2_FIGURE_FILES,
    S2_PROBES,
    ProbeS2SectionSettings,
    probe_s2_markdown,
    run_probe_s2_section,
)
from .probe_section import PROBE_FIGURE_FILES, ProbeSectionSettings, probe_markdown, run_probe_section

__all__ = ["Section", "SECTION_TABLE", "SECTIONS", "SECTION_MODELS", "FIGURES", "TITLES"]


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Args:
        job: ``job(specs, images, settings, run, hooks) -> result``: computes the section and
            writes its files into ``run.out_dir``.
        settings: ``settings(report_settings) -> Settings`` for the job.
        markdown: ``markdown(result) -> (how it was made, tables)`` for ``report.md``.
        figure: the paper's figure number (None: not a figure of the paper).
        title: the section's heading.
        models: the model aliases the section runs (empty: none).
        figure_files: ``figure_files(result) -> [file names]`` shown in ``report.md``.
        weights: ``weights(result) -> {model: weights}`` (random-init warnings); None: none.
        own_weights: the weights every model gets unless ``--model-weights NAME=...`` names
            it (None: the report's weights, which a bare ``--model-weights WEIGHTS`` sets).
    """

    job: Callable[[list[str], Path | None, Any, RunContext, Hooks], Any]
    settings: Callable[[Any], Settings]
    markdown: Callable[[Any], tuple[str, str]]
    figure: int | None
    title: str
    models: tuple[str, ...]
    figure_files: Callable[[Any], list[str]]
    weights: Callable[[Any], dict[str, str]] | None = None
    own_weights: str | None = None


def _kernels_job(specs, images, settings, run, hooks):
    from ..kernels import kernels_job

    return kernels_job(specs, settings, run, hooks)


def _kernel_settings(_report):
    from ..kernels import KernelSettings

    return KernelSettings()


def _coverage_job(specs, images, settings, run, hooks):
    from ..coverage import coverage_job

    return coverage_job(specs, settings, run, hooks)


def _coverage_settings(_report):
    from ..coverage import CoverageSettings

    return CoverageSettings()


@dataclass(frozen=True)
class ErfSectionSettings(Settings):
    """The report's ERF section: the ERF settings and how many images they average over.

    Args:
        size: input side in px.
        num_images: images averaged over.
    """

    size: int = 256
    num_images: int = 3


def _erf_job(specs, images, settings: ErfSectionSettings, run, hooks):
    from ..erf.job import erf_job
    from ..erf.settings import ErfSettings
    from ..io.images import list_images
    from ..jobs import images_label

    erf = ErfSettings(size=settings.size, images=images_label(images))
    return erf_job(specs, list_images(images, settings.num_images), erf, run, hooks)


def _truncation_job(specs, images, settings, run, hooks):
    from ..truncation import truncation_job

    return truncation_job(specs, images, settings, run, hooks)


def _truncation_settings(report):
    from ..truncation import TruncationSettings

    return TruncationSettings(
        rel_sizes=report.truncation_rel_sizes,
        batch_size=report.truncation_batch_size,
        num_images=report.truncation_num_images,
    )


def _runtime_job(specs, images, settings, run, hooks):
    from ..runtime import runtime_job

    return runtime_job(settings, run, hooks)


def _runtime_settings(report):
    from ..runtime import MODE_CHOICES, RuntimeSettings

    return RuntimeSettings(
        resolutions=report.runtime_resolutions,
        mode=MODE_CHOICES[report.runtime_mode],
        repeats=report.runtime_repeats,
        warmup=report.runtime_warmup,
    )


def _table_weights(result) -> dict[str, str]:
    return md.weights_by_model(result.to_frame())


def _files(*names: str) -> Callable[[Any], list[str]]:
    return lambda _result: list(names)


SECTION_TABLE: dict[str, Section] = {
    "kernels": Section(
        _kernels_job,
        _kernel_settings,
        md.kernels_markdown,
        4,
        "Learned long-convolution kernels per stage",
        ("hpx_s18", "hb_s18"),
        lambda results: sorted(f"kernels_{r.model}.png" for r in results),
        lambda results: {r.model: r.weights for r in results},
    ),
    "coverage": Section(
        _coverage_job,
        _coverage_settings,
        md.coverage_markdown,
        6,
        "Relative feature-map coverage of the learned windows",
        ("hpx_s18", "c_hpx_s18", "hpx_a_s18"),
        _files("coverage.png"),
        _table_weights,
    ),
    "erf": Section(
        _erf_job,
        lambda report: ErfSectionSettings(size=report.erf_size, num_images=report.erf_num_images),
        md.erf_markdown,
        5,
        "Effective receptive fields",
        ("conv_s18", "hpx_s18", "hb_s18"),
        _files("erf.png"),
        _table_weights,
    ),
    "truncation": Section(
        _truncation_job,
        _truncation_settings,
        md.truncation_markdown,
        7,
        "Kernel truncation per stage",
        ("hpx_s18",),
        _files("truncation.png"),
        _table_weights,
    ),
    "runtime": Section(
        _runtime_job,
        _runtime_settings,
        md.runtime_markdown,
        2,
        "Runtime of one token-mixer layer against input resolution",
        (),  # single mixer layers, no model
        _files("runtime.png"),
    ),
    "probe": Section(
        run_probe_section,
        lambda _report: ProbeSectionSettings(),
        probe_markdown,
        None,
        "Trained probe models on the global-context probe task",
        ("hpx_probe", "hb_probe", "conv_probe", "attn_probe"),
        _files(*PROBE_FIGURE_FILES),
        own_weights="auto",  # the bundled trained weights
    ),
    "probe_s2": Section(
        run_probe_s2_section,
        lambda _report: ProbeS2SectionSettings(),
        probe_s2_markdown,
        None,
        "Two-stage probes: which stage carries the far square",
        S2_PROBES,
        _files(*PROBE_S2_FIGURE_FILES),
        lambda result: dict(result.weights),
        own_weights="auto",  # the bundled trained weights
    ),
    "interactions": Section(
        run_interaction_section,
        interaction_section_settings,
        interactions_markdown,
        None,
        "What each layer reads: interaction maps and mean interaction distance per block",
        ("hpx_s4", "hb_s4", "conv_s4"),  # one block per stage (the paper's depth comparison)
        _files(*INTERACTION_SECTION_FILES),
        lambda result: {r.model: r.weights for r in result.results},
    ),
}

# Views of the table (execution order, models, figure numbers, titles).
SECTIONS = tuple(SECTION_TABLE)
SECTION_MODELS = {name: s.models for name, s in SECTION_TABLE.items()}
FIGURES = {name: s.figure for name, s in SECTION_TABLE.items()}
TITLES = {name: s.title for name, s in SECTION_TABLE.items()}

"""The figure report: settings, ``report.md`` / ``report.json`` and a numeric comparison of two
report folders. Each section (``runtime/``, ``kernels/``, ``erf/``, ``coverage/``,
``truncation/``) holds one analysis's files."""

from .build import build_report, random_init_models
from .comparison import ARRAY_ATOL_REL, ATOL, RTOL, TIMING_COLUMNS, VOLATILE_KEYS, compare_reports
from .manifest import write_manifest
from .markdown import markdown_table, weights_by_model, write_report_md
from .sections import FIGURES, SECTION_MODELS, SECTION_TABLE, SECTIONS, TITLES, Section
from .settings import FULL, QUICK, ReportSettings, UnusedModelWeightsError, weights_chooser

__all__ = [
    "UnusedModelWeightsError",
    "ReportSettings",
    "QUICK",
    "FULL",
    "SECTION_TABLE",
    "Section",
    "SECTIONS",
    "SECTION_MODELS",
    "FIGURES",
    "TITLES",
    "weights_chooser",
    "build_report",
    "random_init_models",
    "weights_by_model",
    "markdown_table",
    "write_report_md",
    "write_manifest",
    "compare_reports",
    "RTOL",
    "ATOL",
    "ARRAY_ATOL_REL",
    "VOLATILE_KEYS",
    "TIMING_COLUMNS",
]

"""`hpx-analyze models` and the shared CLI error handling."""

from __future__ import annotations

import json
import math

import pytest
import timm
import typer
from typer.testing import CliRunner

import hpx_analysis  # noqa: F401
from hpx_analysis.cli.common import ModelOption, fail, model_specs, progress, user_errors
from hpx_analysis.cli.main import app
from hpx_analysis.io.weights import load_model
from hpx_analysis.models import ALIASES, EXTRA, PUBLISHED

MANIFEST = "official_checkpoints.json"


@pytest.fixture(autouse=True)
def offline_empty_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def listing() -> dict:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _manifest(shared_reference) -> dict:
    return json.loads((shared_reference / MANIFEST).read_text())["models"]


@pytest.fixture
def shared_reference():
    """The committed copy of shared/reference/official_checkpoints.json."""
    from pathlib import Path

    return Path(__file__).with_name("data")


@pytest.mark.slow
def test_json_lists_every_family_model_and_alias(listing):
    rows = {row["name"]: row for row in listing["models"]}
    assert set(PUBLISHED + EXTRA) <= rows.keys()
    assert listing["aliases"] == dict(ALIASES)
    for alias, target in ALIASES.items():
        assert alias in rows[target]["aliases"]
    for name in PUBLISHED + EXTRA:
        assert rows[name]["published"] is (name in PUBLISHED)
        assert rows[name]["cached"] is False
    assert rows["hpx_former_s18"]["hub_id"] == "Spravil/hpx_former_s18.westai_in1k"
    assert rows["convformer_s18"]["family"] == "timm"


def test_counts_and_mixers_match_real_models(listing):
    rows = {row["name"]: row for row in listing["models"]}
    for name in ("hpx_former_s4", "hb_former_s4"):
        model = timm.create_model(name)
        assert rows[name]["params"] == sum(p.numel() for p in model.parameters())
    assert rows["hpx_former_s18"]["mixers"] == ["HyenaPixel ×3", "HyenaPixel ×3", "HyenaPixel ×9", "HyenaPixel ×3"]
    assert rows["hpx_a_former_s18"]["mixers"][2:] == ["Attention ×9", "Attention ×3"]
    assert [m.split(" ×")[0] for m in rows["c_hpx_former_s18"]["mixers"][:2]] == ["SepConv"] * 2
    assert [int(m.split(" ×")[1]) for m in rows["hpx_former_b36"]["mixers"]] == [3, 12, 18, 3]


def test_counts_match_the_official_manifest_where_it_counts_parameters(listing, shared_reference):
    """The manifest's num_params equals the parameter count for the H_b models (for H_px,
    the official code registers the filter inputs as parameters, so it counts them too)."""
    rows = {row["name"]: row for row in listing["models"]}
    manifest = _manifest(shared_reference)
    for name in ("hb_former_s18", "hb_former_b36", "hb_a_former_s18"):
        assert rows[name]["params"] == manifest[name]["num_params"]
    for name, entry in manifest.items():
        state_numel = sum(math.prod(shape) for shape in entry["state_dict"].values())
        assert rows[name]["params"] <= state_numel


@pytest.mark.slow
def test_table_output_names_models_and_aliases():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for text in ("hpx_former_s18", "(hpx_s18)", "hb_former_b36", "convformer_s18", "HyenaPixel"):
        assert text in result.stdout


def test_no_arguments_shows_help():
    result = CliRunner().invoke(app, [])
    assert "models" in result.output and "Usage" in result.output


# ----------------------------------------------------------------------------- error handling
def _demo_app() -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    def run(model: ModelOption = None) -> None:
        model = model or ["hpx_s4=random"]
        with user_errors():
            for spec in model_specs(model):
                load_model(spec)

    @demo.command()
    def other() -> None:
        fail("something [bad] happened\nacross lines")

    return demo


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--model", "hpx_s19"], "unknown model 'hpx_s19'"),
        (["run", "--model", "hpx_s4=/no/such/file.pth"], "checkpoint file not found"),
        (["run", "--model", "hpx_s18=pretrained"], "published weights for hpx_former_s18 are not available"),
        (["other"], "something [bad] happened across lines"),
    ],
)
def test_errors_are_one_line_without_traceback(args, fragment):
    result = CliRunner().invoke(_demo_app(), args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in result.output


def test_other_key_errors_are_not_swallowed():
    with pytest.raises(KeyError):
        with user_errors():
            raise KeyError("some internal key")


def test_progress_has_count_and_eta_columns():
    from rich.progress import MofNCompleteColumn, TimeRemainingColumn

    bar = progress()
    kinds = {type(column) for column in bar.columns}
    assert {MofNCompleteColumn, TimeRemainingColumn} <= kinds

"""NAME[=WEIGHTS] parsing and model loading: local files, seeds, hub cache, offline fallbacks."""

from __future__ import annotations

import pathlib
import time
import warnings

import pytest
import timm
import torch
from safetensors.torch import save_file

import hpx_analysis  # noqa: F401  (registers the models)
from hpx_analysis.io.devices import DeviceError, resolve_device
from hpx_analysis.io.weights import (
    LoadedModel,
    ModelSpec,
    WeightsError,
    load_model,
    parse_model_spec,
    published_weights_cached,
)

SMALL = "hpx_former_s4"
INPUT = torch.linspace(-2.0, 2.0, 3 * 64 * 64).reshape(1, 3, 64, 64)


@pytest.fixture(autouse=True)
def offline_empty_hub(monkeypatch, tmp_path):
    """No test may reach a network; every test starts with an empty, private HF cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def saved_model():
    """A seeded hpx_former_s4 (seed 7) in eval mode, its state dict and its logits on INPUT."""
    torch.manual_seed(7)
    model = timm.create_model(SMALL).eval()
    with torch.no_grad():
        logits = model(INPUT)
    return {k: v.clone() for k, v in model.state_dict().items()}, logits


def _assert_same_state(model: torch.nn.Module, expected: dict) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def _write(path: pathlib.Path, state: dict, wrapper: str | None) -> None:
    obj = state if wrapper is None else {wrapper: state, "epoch": 3}
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(obj, str(path))


# ----------------------------------------------------------------------------- spec parsing
def test_parse_resolves_aliases_and_modes(tmp_path):
    assert parse_model_spec("hpx_s18") == ModelSpec("hpx_former_s18", "auto")
    assert parse_model_spec(" hb_s18 = RANDOM ") == ModelSpec("hb_former_s18", "random")
    assert parse_model_spec("conv_s18=pretrained") == ModelSpec("convformer_s18", "pretrained")
    assert parse_model_spec("resnet18").name == "resnet18"
    assert parse_model_spec("resnet18.tv_in1k=random").name == "resnet18.tv_in1k"
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(b"")  # a checkpoint path must name an existing file (checked before any work)
    spec = parse_model_spec(f"hpx_s4={ckpt}")
    assert spec == ModelSpec("hpx_former_s4", str(ckpt.resolve()))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("hpx_s19", "unknown model"),
        ("hpx_s18=", "empty WEIGHTS"),
        ("=random", "no model name"),
        ("resnet18.no_such_tag", "Invalid pretrained tag"),
    ],
)
def test_parse_rejects_bad_specs(text, fragment):
    with pytest.raises(WeightsError, match=fragment):
        parse_model_spec(text)


@pytest.mark.parametrize("step", ["\u00b2", "\u0663", "1\u00b2", "-1", "1e3", "2.0", "", "x"])
def test_bundled_step_must_be_written_in_digits(step):
    """``bundled:STEP`` with a STEP that str.isdigit() accepts but int() refuses (superscript
    two) or that int() reads from other scripts (Arabic-Indic three) is the weights error."""
    text = f"hpx_probe=bundled:{step}"
    for spec in (text, ModelSpec("hpx_probe", f"bundled:{step}")):
        with pytest.raises(WeightsError, match="expected bundled:STEP"):
            load_model(spec)


def test_cli_names_a_malformed_bundled_step_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from hpx_analysis.cli.main import app

    args = ["erf", "-m", "hpx_probe=bundled:\u00b2", "--size", "64", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()  # stdout and stderr together
    assert result.exit_code == 2
    assert len(lines) == 1 and "expected bundled:STEP" in lines[0] and "Traceback" not in lines[0]


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"seed": 1.5}, TypeError, "seed must be a whole number"),
        ({"seed": 2.0}, TypeError, "seed must be a whole number"),
        ({"seed": True}, TypeError, "seed must be a whole number"),
        ({"seed": "0"}, TypeError, "seed must be a whole number"),
        ({"seed": 2**64}, ValueError, "seed must be at most"),
        ({"num_classes": -1}, ValueError, "num_classes must be at least 0"),
        ({"num_classes": 10.0}, TypeError, "num_classes must be a whole number"),
        ({"num_classes": 2.5}, TypeError, "num_classes must be a whole number"),
    ],
)
def test_load_model_refuses_numbers_it_would_coerce(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        load_model(f"{SMALL}=random", **kwargs)


def test_load_model_takes_numpy_integers_and_negative_seeds():
    import numpy as np

    a = load_model(f"{SMALL}=random", seed=np.int64(3), num_classes=np.int32(5))
    b = load_model(f"{SMALL}=random", seed=3, num_classes=5)
    _assert_same_state(a.model, b.model.state_dict())
    assert a.weights == "random init (seed 3)"
    torch.manual_seed(-4)
    expected = timm.create_model(SMALL).state_dict()
    _assert_same_state(load_model(f"{SMALL}=random", seed=-4).model, expected)


def test_num_classes_zero_gives_pooled_features():
    model = load_model(f"{SMALL}=random", num_classes=0).model
    features = model.forward_head(model.forward_features(INPUT[:, :, :32, :32]), pre_logits=True)
    assert torch.equal(model(INPUT[:, :, :32, :32]), features)


def test_unknown_model_suggests_close_names():
    with pytest.raises(WeightsError) as info:
        parse_model_spec("hpx_former_s81")
    assert "hpx_former_s18" in str(info.value)


# ----------------------------------------------------------------------------- devices
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------- random init
def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = load_model(f"{SMALL}=random", seed=0)
    assert torch.equal(torch.rand(3), expected_draw)
    b = load_model(f"{SMALL}=random", seed=0)
    c = load_model(f"{SMALL}=random", seed=1)
    _assert_same_state(b.model, a.model.state_dict())
    weight = "head.fc2.weight"
    assert not torch.equal(a.model.state_dict()[weight], c.model.state_dict()[weight])
    assert a.weights == "random init (seed 0)" and a.weights_kind == "random"
    assert not a.model.training
    assert a.as_dict() == {"model": SMALL, "weights": "random init (seed 0)", "weights_kind": "random"}


def test_num_classes_is_passed_on():
    loaded = load_model(f"{SMALL}=random", num_classes=10)
    assert loaded.model(INPUT[:, :, :32, :32]).shape == (1, 10)


def test_auto_for_unpublished_model_goes_straight_to_random(recwarn):
    loaded = load_model("hpx_s4")
    assert loaded.weights_kind == "random"
    assert loaded.weights == "random init (seed 0; no published weights for hpx_former_s4)"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ----------------------------------------------------------------------------- local files
@pytest.mark.parametrize(
    "filename, wrapper",
    [
        ("plain.safetensors", None),
        ("plain.pth", None),
        ("wrapped.pth", "state_dict"),
        ("wrapped.bin", "model"),
        ("plain.pt", None),
    ],
)
def test_checkpoint_files_load_exactly(tmp_path, saved_model, filename, wrapper):
    state, logits = saved_model
    path = tmp_path / filename
    _write(path, state, wrapper)
    loaded = load_model(f"hpx_s4={path}", seed=99)
    assert isinstance(loaded, LoadedModel)
    assert loaded.name == SMALL and loaded.weights_kind == "file"
    assert loaded.weights == f"file {path.resolve()}"
    _assert_same_state(loaded.model, state)
    with torch.no_grad():
        assert torch.equal(loaded.model(INPUT), logits)


def test_ddp_prefixed_checkpoint_loads(tmp_path, saved_model):
    state, _ = saved_model
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, str(path))
    _assert_same_state(load_model(f"hpx_s4={path}").model, state)


def test_checkpoint_of_other_architecture_is_refused_with_key_lists(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "hb.safetensors"
    save_file(timm.create_model("hb_former_s4").state_dict(), str(path))
    with pytest.raises(WeightsError) as info:
        load_model(f"hpx_s4={path}")
    message = str(info.value)
    assert "does not fit hpx_former_s4" in message
    assert "missing keys" in message and "unexpected keys" in message
    assert "\n" not in message


def test_shape_mismatch_is_named(tmp_path, saved_model):
    state, _ = saved_model
    bad = dict(state)
    bad["head.fc2.weight"] = torch.zeros(7, state["head.fc2.weight"].shape[1])
    path = tmp_path / "bad.pth"
    torch.save(bad, str(path))
    with pytest.raises(WeightsError) as info:
        load_model(f"hpx_s4={path}")
    message = str(info.value)
    expected_shape = tuple(state["head.fc2.weight"].shape)
    assert "1 shape mismatches: head.fc2.weight" in message
    assert f"checkpoint (7, {expected_shape[1]}), model {expected_shape}" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_missing_key_is_named(tmp_path, saved_model):
    state, _ = saved_model
    partial = {k: v for k, v in state.items() if k != "norm.weight"}
    path = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in partial.items()}, str(path))
    with pytest.raises(WeightsError, match=r"1 missing keys: norm\.weight"):
        load_model(f"hpx_s4={path}")


class _Payload:
    """Unpickling this creates a marker file: proof that pickled code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_without_running_it(tmp_path, saved_model):
    state, _ = saved_model
    marker = tmp_path / "code-was-executed"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": state, "extra": _Payload(marker)}, str(path))
    with pytest.raises(WeightsError, match="pickled code"):
        load_model(f"hpx_s4={path}")
    assert not marker.exists()


@pytest.mark.parametrize(
    "filename, content, fragment",
    [
        ("missing.pth", None, "not found"),
        ("garbage.pth", b"this is not a checkpoint", "cannot read checkpoint"),
        ("garbage.safetensors", b"\x00\x01\x02", "cannot read safetensors"),
        ("weights.txt", b"x", "unsupported checkpoint type"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, filename, content, fragment):
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=fragment):
        load_model(f"hpx_s4={path}")


# ----------------------------------------------------------------------------- published weights
@pytest.fixture(scope="module")
def s18_seed0_state():
    return load_model("hpx_s18=random", seed=0).model.state_dict()


def test_auto_offline_decides_quickly_and_says_so():
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="published weights unavailable"):
        loaded = load_model("resnet18")
    assert time.perf_counter() - start < 5.0
    assert loaded.weights_kind == "random"
    assert loaded.weights.startswith("random init (seed 0; published weights unavailable: ")
    assert "HF_HUB_OFFLINE" in loaded.weights


def test_auto_offline_hyenapixel_is_the_seeded_random_init(s18_seed0_state):
    with pytest.warns(RuntimeWarning, match="hpx_former_s18: published weights unavailable"):
        loaded = load_model("hpx_s18")
    assert loaded.weights_kind == "random"
    assert ("HF_HUB_OFFLINE is set and Spravil/hpx_former_s18.westai_in1k is not in the local cache") in loaded.weights
    _assert_same_state(loaded.model, s18_seed0_state)


def test_pretrained_offline_is_an_error():
    with pytest.raises(WeightsError, match="not available.*HF_HUB_OFFLINE"):
        load_model("hpx_s18=pretrained")
    assert not published_weights_cached("hpx_s18")


def test_unreachable_hub_fails_fast(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning):
        loaded = load_model("resnet18")
    assert time.perf_counter() - start < 5.0
    assert loaded.weights_kind == "random"
    assert "hub not reachable" in loaded.weights
    with pytest.raises(WeightsError, match="hub not reachable"):
        load_model("resnet18=pretrained")


def _put_in_hf_cache(cache: pathlib.Path, repo: str, filename: str, state: dict) -> None:
    """Lay out a file the way huggingface_hub caches it (refs/main -> snapshot)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / filename))
    else:
        torch.save(state, str(snapshot / filename))


def test_published_weights_come_from_the_local_cache(tmp_path):
    torch.manual_seed(3)
    reference = timm.create_model("resnet18").eval()
    state = reference.state_dict()
    hub_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    _put_in_hf_cache(tmp_path / "hf-cache", hub_id, "model.safetensors", state)
    assert published_weights_cached("resnet18")
    for spec in ("resnet18", "resnet18=pretrained"):
        loaded = load_model(spec, seed=11)
        assert loaded.weights_kind == "published"
        assert loaded.weights == f"published ({hub_id})"
        _assert_same_state(loaded.model, state)


def test_hyenapixel_published_bin_loads_from_cache(tmp_path, s18_seed0_state):
    """The official repos hold pytorch_model.bin (no safetensors): found and loaded strictly."""
    _put_in_hf_cache(
        tmp_path / "hf-cache",
        "Spravil/hpx_former_s18.westai_in1k",
        "pytorch_model.bin",
        {"state_dict": s18_seed0_state},
    )
    assert published_weights_cached("hpx_s18")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loaded = load_model("hpx_s18=pretrained", seed=5)
    assert loaded.weights == "published (Spravil/hpx_former_s18.westai_in1k)"
    assert loaded.weights_kind == "published"
    _assert_same_state(loaded.model, s18_seed0_state)

"""Model + weights from a ``NAME[=WEIGHTS]`` spec (the command-line contract of DESIGN.md).

WEIGHTS is ``auto`` (the bundled weights of a probe model; published weights when cached or
downloadable, else a seeded random init with a warning), ``bundled`` (the probe weights that
ship in the package), ``bundled:STEP`` (one of their training snapshots), ``pretrained``
(published weights or an error), ``random`` (seeded init) or a path to a ``.safetensors`` /
``.pth`` / ``.pt`` / ``.bin`` file. Local files are read without executing pickled code.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from ..models import resolve_name, unwrap_state_dict
from ..models.metaformer import HyenaMetaFormer, checkpoint_filter_fn
from .checks import SEED_RANGE, whole_number
from .devices import resolve_device

__all__ = [
    "WeightsError",
    "ModelSpec",
    "LoadedModel",
    "parse_model_spec",
    "load_model",
    "published_weights_cached",
    "WEIGHT_MODES",
]

log = logging.getLogger(__name__)

WEIGHT_MODES = ("auto", "pretrained", "random", "bundled")
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_STEP = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
HUB_PROBE_TIMEOUT_S = 4.0
_LIST_LIMIT = 5


class WeightsError(Exception):
    """A model or its weights could not be set up; the message is meant for the user."""


@dataclass(frozen=True)
class ModelSpec:
    """A canonical timm model name and where its weights come from.

    Args:
        name: the canonical timm name (aliases resolved; a pretrained tag ``name.tag`` kept).
        weights: ``auto``, ``pretrained``, ``random``, ``bundled``, ``bundled:STEP`` or the
            resolved path of a checkpoint file.
    """

    name: str
    weights: str = "auto"

    def __str__(self) -> str:
        return f"{self.name}={self.weights}"


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with a record of the weights it carries.

    Args:
        name: the canonical timm name.
        model: the model.
        weights: a description of the weights (source, file, seed, notes).
        weights_kind: ``published``, ``bundled``, ``file`` or ``random``.
    """

    name: str
    model: torch.nn.Module
    weights: str
    weights_kind: str

    def as_dict(self) -> dict:
        """The record written with results.

        Returns:
            dict: ``model``, ``weights`` and ``weights_kind``.
        """
        return {"model": self.name, "weights": self.weights, "weights_kind": self.weights_kind}


# ----------------------------------------------------------------------------- spec parsing
def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``NAME[=WEIGHTS]`` (``"hpx_s18"``, ``"hpx_s18=random"``, ``"hb_s18=/p/ckpt.safetensors"``).

    Args:
        text: the spec; WEIGHTS as in the module's docstring (default ``auto``).

    Returns:
        ModelSpec: the canonical model name and the weights (a mode in lower case, or the
        resolved path of an existing checkpoint file).

    Raises:
        WeightsError: an unknown model (with close matches), an unknown pretrained tag, an
            empty or unknown WEIGHTS part, a ``bundled:STEP`` whose STEP is not written in
            digits 0-9, or a checkpoint path that is missing or not a file.
    """
    name, sep, weights = str(text).strip().partition("=")
    name, weights = name.strip(), weights.strip()
    if not name:
        raise WeightsError(f"model spec {text!r} has no model name (expected NAME[=WEIGHTS])")
    if sep and not weights:
        raise WeightsError(
            f"model spec {text!r} has an empty WEIGHTS part (use one of {', '.join(WEIGHT_MODES)} or a checkpoint path)"
        )
    try:
        canonical = resolve_name(name)
    except KeyError as err:
        raise WeightsError(err.args[0] if err.args else f"unknown model {name!r}") from None
    if "." in canonical:
        try:
            timm.models.get_pretrained_cfg(canonical)
        except RuntimeError as err:
            raise WeightsError(f"model {name!r}: {_first_line(err)}") from None
    if not weights or weights.lower() in WEIGHT_MODES:
        return ModelSpec(canonical, (weights or "auto").lower())
    if weights.lower().startswith("bundled:"):  # a bundled training snapshot, bundled:STEP
        step = weights.partition(":")[2].strip()
        if not _STEP.fullmatch(step):
            raise WeightsError(f"model spec {text!r}: expected bundled:STEP with an integer step")
        return ModelSpec(canonical, f"bundled:{int(step)}")
    return ModelSpec(canonical, str(_checkpoint_path(weights, name)))


def _checkpoint_path(weights: str, name: str) -> Path:
    """The checkpoint file a WEIGHTS part names, checked to exist before any work starts.

    A word that is neither a mode nor anything path-like (``randon``) is reported as an
    unknown WEIGHTS value with the choices, not as a missing file."""
    path = Path(weights).expanduser()
    choices = f"use {', '.join(WEIGHT_MODES)} or the path of a checkpoint file ({', '.join(_SUFFIXES)})"
    path_like = os.sep in weights or (os.altsep or os.sep) in weights or path.suffix.lower() in _SUFFIXES
    if not path.exists():
        if not path_like:
            raise WeightsError(f"unknown weights {weights!r} for {name}: {choices}")
        raise WeightsError(f"checkpoint file not found: {path} (weights for {name})")
    if not path.is_file():
        raise WeightsError(f"checkpoint path is not a file: {path} (weights for {name})")
    return path.resolve()


# ----------------------------------------------------------------------------- hub helpers
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off.

    Returns:
        bool: HF_HUB_OFFLINE as set now (huggingface_hub reads it only once, at import).
    """
    from huggingface_hub import constants

    return _env_flag("HF_HUB_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _hf_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT


def _pretrained_cfg(name: str):
    try:
        return timm.models.get_pretrained_cfg(name)
    except (RuntimeError, KeyError, ValueError):
        return None


def _hub_location(name: str) -> tuple[str, str | None, tuple[str, ...]] | None:
    """(repo id, revision, candidate file names) of a model's published weights, or None."""
    cfg = _pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    repo, _, revision = hub_id.partition("@")
    filename = getattr(cfg, "hf_hub_filename", None)
    return repo, revision or None, (filename,) if filename else HUB_FILENAMES


def _cached_hub_file(location) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    repo, revision, filenames = location
    for filename in filenames:
        path = try_to_load_from_cache(repo, filename, cache_dir=_hf_cache_dir(), revision=revision)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def published_weights_cached(name: str) -> bool:
    """Whether the published weights of a model are in the local Hugging Face cache (never
    touches the network).

    Args:
        name: a model name or alias.

    Returns:
        bool: True when the file is cached; False for unknown or unpublished models.
    """
    try:
        location = _hub_location(resolve_name(name))
    except KeyError:
        return False
    return location is not None and _cached_hub_file(location) is not None


def _probe_hub(location, timeout: float) -> tuple[str | None, str]:
    """Which candidate file exists on the hub: (filename, "") or (None, reason). Bounded by a
    hard time limit so a black-holed network cannot stall the caller."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    repo, revision, filenames = location
    endpoint = _hf_endpoint()
    result: dict = {}

    def probe() -> None:
        for filename in filenames:
            url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
            try:
                get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
            except EntryNotFoundError:
                continue
            except Exception as err:  # network and hub errors all mean "not available now"
                result["reason"] = f"hub not reachable ({type(err).__name__}: {_first_line(err)})"
                return
            result["filename"] = filename
            return
        result["reason"] = f"no weights file ({', '.join(filenames)}) in hub repo {repo}"

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 2.0)
    if worker.is_alive():
        return None, f"hub did not answer within {timeout + 2.0:.0f} s"
    return result.get("filename"), result.get("reason", "")


def _download_hub_file(location, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    repo, revision, _ = location
    return hf_hub_download(
        repo,
        filename,
        revision=revision,
        cache_dir=_hf_cache_dir(),
        endpoint=_hf_endpoint(),
        etag_timeout=HUB_PROBE_TIMEOUT_S,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _find_published_file(name: str) -> tuple[str | None, str, str]:
    """(local path or None, hub id, reason when None): cache first, then a bounded download."""
    location = _hub_location(name)
    if location is None:
        return None, "", f"timm has no published weights for {name}"
    hub_id = location[0] + (f"@{location[1]}" if location[1] else "")
    cached = _cached_hub_file(location)
    if cached:
        return cached, hub_id, ""
    if hub_offline():
        return None, hub_id, f"HF_HUB_OFFLINE is set and {hub_id} is not in the local cache"
    filename, reason = _probe_hub(location, HUB_PROBE_TIMEOUT_S)
    if filename is None:
        return None, hub_id, f"{hub_id}: {reason}"
    try:
        return _download_hub_file(location, filename), hub_id, ""
    except Exception as err:  # a failed download means the weights are unavailable
        return None, hub_id, f"download of {hub_id} failed ({type(err).__name__}: {_first_line(err)})"


# ----------------------------------------------------------------------------- model building
def _create(name: str, seed: int, num_classes: int | None, **kwargs) -> torch.nn.Module:
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, **kwargs)


def _create_published(
    name: str, path: str, hub_id: str, seed: int, num_classes: int | None
) -> tuple[torch.nn.Module, str]:
    overlay = {"file": path, "source": ""}
    try:
        model = _create(name, seed, num_classes, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as err:  # a corrupt cache entry or a checkpoint that no longer fits
        raise WeightsError(
            f"published weights {hub_id} for {name} could not be loaded from {path}: {_first_line(err)}"
        ) from None
    description = f"published ({hub_id})"
    default_classes = getattr(_pretrained_cfg(name), "num_classes", None)
    if num_classes is not None and default_classes and num_classes != default_classes:
        description += f"; classifier re-initialised for {num_classes} classes (seed {seed})"
    return model, description


def _read_checkpoint(path: Path) -> dict:
    """A file's tensors, without executing pickled code."""
    if not path.exists():
        raise WeightsError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"checkpoint path is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise WeightsError(f"cannot read safetensors file {path}: {_first_line(err)}") from None
    if suffix in TORCH_SUFFIXES:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise WeightsError(f"refused to load {path}: {_blocked_global(err)}") from None
        except Exception as err:  # zip/EOF/format errors: the file is not a torch checkpoint
            raise WeightsError(f"cannot read checkpoint {path}: {_first_line(err)}") from None
        try:
            return unwrap_state_dict(obj)
        except TypeError as err:
            raise WeightsError(f"checkpoint {path}: {err}") from None
    raise WeightsError(
        f"unsupported checkpoint type {path.suffix or '(no suffix)'!r} for {path} "
        f"(expected .safetensors, .pth, .pt or .bin)"
    )


def _blocked_global(err: BaseException) -> str:
    """What torch's safe unpickler refused, without its advice to turn the protection off and
    without terminal escape codes."""
    text = _ANSI.sub("", str(err))
    found = _GLOBAL.search(text)
    what = f"it references {found.group(1)}, " if found else "it holds objects other than tensors, "
    return (
        what + "which would need pickled code to be executed (never done here); save a plain state dict "
        "of tensors or a .safetensors file"
    )


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return f"{len(items)} {label}: {shown}{more}"


def checkpoint_mismatch(state_dict: dict, model_state: dict) -> str:
    """How a state dict fails to fit a model, in one line.

    Args:
        state_dict: the checkpoint's tensors by key.
        model_state: the model's ``state_dict()``.

    Returns:
        str: the missing keys, unexpected keys and shape mismatches (a few of each, with
        counts), or ``""`` when the state dict fits.
    """
    missing = sorted(k for k in model_state if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in model_state)
    mismatched = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(model_state[k].shape)})"
        for k in sorted(model_state)
        if k in state_dict and tuple(state_dict[k].shape) != tuple(model_state[k].shape)
    ]
    parts = [
        _listing(label, items)
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    return "; ".join(parts)


def _load_file_into(model: torch.nn.Module, name: str, path: Path) -> None:
    state_dict = unwrap_state_dict(_read_checkpoint(path))
    if not state_dict:
        raise WeightsError(f"checkpoint {path} holds no tensors")
    if isinstance(model, HyenaMetaFormer):
        state_dict = checkpoint_filter_fn(state_dict, model)
    problem = checkpoint_mismatch(state_dict, model.state_dict())
    if problem:
        raise WeightsError(f"checkpoint {path} does not fit {name}: {problem}")
    model.load_state_dict(state_dict, strict=True)


def _checked_spec(spec: str | ModelSpec) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return parse_model_spec(f"{spec.name}={spec.weights}")  # checks the name and the weights
    if isinstance(spec, str):
        return parse_model_spec(spec)
    raise TypeError(f"load_model expects 'NAME[=WEIGHTS]' or a ModelSpec, got {type(spec).__name__}")


def _bundled_snapshot(name: str, step: int, seed: int, num_classes: int | None) -> LoadedModel:
    from ..probe.bundled import snapshot_paths

    snaps = snapshot_paths(name.partition(".")[0])
    if step not in snaps:
        have = ", ".join(map(str, snaps)) or "none"
        raise WeightsError(f"no bundled snapshot of {name} at step {step} (bundled steps: {have})")
    model = _create(name, seed, num_classes)
    _load_file_into(model, name, snaps[step])
    return LoadedModel(name, model, f"bundled snapshot ({snaps[step].name}, step {step})", "bundled")


def _published_or_random(name: str, mode: str, seed: int, num_classes: int | None) -> LoadedModel:
    """The published weights (``pretrained``: or an error; ``auto``: or a seeded random init)."""
    path, hub_id, reason = _find_published_file(name)
    if path is not None:
        model, description = _create_published(name, path, hub_id, seed, num_classes)
        return LoadedModel(name, model, description, "published")
    if mode == "pretrained":
        raise WeightsError(f"published weights for {name} are not available: {reason}")
    model = _create(name, seed, num_classes)
    if hub_id:
        note = f"published weights unavailable: {reason}"
        warnings.warn(f"{name}: {note}; using a random init (seed {seed})", RuntimeWarning, stacklevel=4)
    else:
        note = f"no published weights for {name}"
        log.info("%s: no published weights; using a random init (seed %d)", name, seed)
    return LoadedModel(name, model, f"random init (seed {seed}; {note})", "random")


def _build(spec: ModelSpec, seed: int, num_classes: int | None) -> LoadedModel:
    """The model of a checked spec with its weights, on the CPU."""
    from ..probe.bundled import bundled_path

    name, mode = spec.name, spec.weights
    bundled = bundled_path(name.partition(".")[0])
    if mode == "random":
        return LoadedModel(name, _create(name, seed, num_classes), f"random init (seed {seed})", "random")
    if mode.startswith("bundled:"):
        return _bundled_snapshot(name, int(mode.partition(":")[2]), seed, num_classes)
    if mode == "bundled" or (mode == "auto" and bundled is not None):
        if bundled is None:
            raise WeightsError(f"no bundled weights for {name} (only the probe models ship trained weights)")
        model = _create(name, seed, num_classes)
        _load_file_into(model, name, bundled)
        return LoadedModel(name, model, f"bundled ({bundled.name})", "bundled")
    if mode in ("auto", "pretrained"):
        return _published_or_random(name, mode, seed, num_classes)
    path = Path(mode)
    model = _create(name, seed, num_classes)
    _load_file_into(model, name, path)
    return LoadedModel(name, model, f"file {path}", "file")


def load_model(
    spec: str | ModelSpec, *, device: str | torch.device = "cpu", seed: int = 0, num_classes: int | None = None
) -> LoadedModel:
    """Build a model with the weights its spec asks for, in eval mode on ``device``.

    Args:
        spec: ``"NAME[=WEIGHTS]"`` (a model name or alias; WEIGHTS as in the module's
            docstring, default ``auto``) or a :class:`ModelSpec`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        seed: seed of any random initialisation (the random init itself, a re-initialised
            classifier); the global random state is left as found. A whole number.
        num_classes: classifier outputs (None: the model's default; 0: no classifier, the
            model returns pooled features). A whole number.

    Returns:
        LoadedModel: ``.model`` in eval mode on the device, ``.weights`` (a description of
        the weights it carries) and ``.weights_kind`` (``published``, ``bundled``, ``file``
        or ``random``).

    Raises:
        WeightsError: an unknown model, or weights that are missing, unreadable or do not fit.
        TypeError: a spec of another type, or a seed or num_classes that is not a whole number.
        ValueError: a seed outside torch's range or a negative num_classes.
        DeviceError: the device is not available.
    """
    spec = _checked_spec(spec)
    seed = whole_number(seed, "seed", *SEED_RANGE)
    if num_classes is not None:
        num_classes = whole_number(num_classes, "num_classes", minimum=0)
    target = resolve_device(device)
    loaded = _build(spec, seed, num_classes)
    loaded.model.eval().to(target)
    return loaded

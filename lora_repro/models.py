"""Models and tokenizers from the `model` config group: pretrained, packaged, or built from a shape.

`model.pretrained` is a Hugging Face hub id, a local folder, `package:<module>` (a model shipped inside an
installed Python package, such as the offline default MiniLM), or null for a random init from
`model.shape`. `build_model` builds the same architecture on any device, so the paper's models can be
counted on the meta device with no download and no memory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lora_repro.data.tasks import num_labels
from lora_repro.errors import UserError
from lora_repro.hub import ensure_reachable_or_offline
from lora_repro.methods import ParamCounts, apply_method, count_parameters, in_head

__all__ = ["PACKAGE_PREFIX", "build_model", "load_model", "load_tokenizer", "resolve_source"]

PACKAGE_PREFIX = "package:"
_TRUE = {"1", "ON", "YES", "TRUE"}

log = logging.getLogger(__name__)


def resolve_source(source: str) -> str:
    """Turn `package:<module>` into that installed package's model folder; return anything else unchanged.

    The package keeps the model in a `model` folder beside its `__init__`. The package is found, never imported:
    naming an installed module must not run it.

    Args:
        source: a hub id, a local path, or `package:<module>`.

    Returns:
        What `from_pretrained` should be given.

    Raises:
        UserError: the package is not installed or holds no model folder.
    """
    if not source.startswith(PACKAGE_PREFIX):
        return source
    name = source.removeprefix(PACKAGE_PREFIX)
    try:
        spec = importlib.util.find_spec(name) if name.isidentifier() else None  # a top-level package, not imported
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model source {source!r}: the package {name!r} is not installed; install it or point "
                        "model.pretrained at a hub id or local folder")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not folder.is_dir():
        raise UserError(f"model source {source!r}: the package has no model folder at {folder}")
    return str(folder)


def load_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    """Load the tokenizer named by `model_cfg.tokenizer` (see `resolve_source`).

    Raises:
        UserError: the tokenizer is not available locally and cannot be downloaded.
    """
    return _from_pretrained(AutoTokenizer.from_pretrained, model_cfg.tokenizer, "model.tokenizer",
                            trust_remote_code=model_cfg.trust_remote_code, **_offline_kwargs(model_cfg.tokenizer))


def load_model(model_cfg: DictConfig, num_labels: int) -> PreTrainedModel:
    """Load the pretrained model with a fresh classification head, or build it at random if none is named.

    Args:
        model_cfg: the `model` config group. `pretrained: null` means a random init from `shape`, on CPU,
            seeded by the caller (`torch.manual_seed`).
        num_labels: classes of the task; 1 means regression (STS-B).

    Returns:
        An `AutoModelForSequenceClassification` model.

    Raises:
        UserError: the model is not available locally and cannot be downloaded.
    """
    if model_cfg.pretrained is None:
        return build_model(model_cfg, num_labels, device="cpu")
    # Safetensors only: a checkpoint that is only a pickle (pytorch_model.bin) is refused, not unpickled.
    # transformers' load report shouts about the new head on every run; it is expected, so it is said once,
    # calmly, and only weights missing outside the head are reported as a problem.
    report = logging.getLogger("transformers.modeling_utils")  # the logger its load report goes to
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        model, info = _from_pretrained(
            AutoModelForSequenceClassification.from_pretrained, model_cfg.pretrained, "model.pretrained",
            trust_remote_code=model_cfg.trust_remote_code, use_safetensors=True, output_loading_info=True,
            # fp32 master weights whatever dtype the checkpoint is stored in (transformers 5 would keep it):
            # fp16/bf16 compute comes from autocast (train.precision), never from fp16 weights under AdamW.
            dtype=torch.float32,
            **_label_kwargs(num_labels), **_offline_kwargs(model_cfg.pretrained, adapter_lookup=True),
            **model_cfg.config_overrides)
    finally:
        report.setLevel(level)
    heads = tuple(model_cfg.head_modules)
    outside = [k for k in info["missing_keys"] if not in_head(k, heads)]
    if outside:
        log.warning("%s lacks %d weights outside the head, initialized at random: %s", model_cfg.pretrained,
                    len(outside), ", ".join(sorted(outside)[:5]))
    elif info["missing_keys"]:
        log.info("newly initialized for this task: %s (the head, %s, trains under every method)",
                 ", ".join(sorted({k.rsplit(".", 1)[0] for k in info["missing_keys"]})), ", ".join(heads))
    return model


def build_model(model_cfg: DictConfig, num_labels: int, device: str = "meta") -> PreTrainedModel:
    """Build the architecture from `model_cfg.shape` with random weights, never downloading anything.

    Args:
        model_cfg: the `model` config group (`architecture` is a transformers model type).
        num_labels: classes of the task; 1 means regression.
        device: where to create the weights; "meta" allocates nothing (for counting parameters).

    Returns:
        An `AutoModelForSequenceClassification` model.

    Raises:
        UserError: `model_cfg.architecture` is not a transformers model type.
    """
    shape = OmegaConf.to_container(model_cfg.shape, resolve=True)
    try:
        config = AutoConfig.for_model(model_cfg.architecture, **shape, **_label_kwargs(num_labels),
                                      **model_cfg.config_overrides)
    except ValueError as err:
        raise UserError(f"model.architecture {model_cfg.architecture!r} is not a transformers model type "
                        f"(e.g. bert, roberta, deberta-v2): {err}") from None
    with torch.device(device):
        return AutoModelForSequenceClassification.from_config(config)


def _label_kwargs(num_labels: int) -> dict[str, Any]:
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    # Without problem_type, transformers guesses from the label dtype; say it, so STS-B is always MSE.
    return {"num_labels": num_labels,
            "problem_type": "regression" if num_labels == 1 else "single_label_classification"}


def check_loadable(model_cfg: DictConfig) -> None:
    """Raise the run's own `UserError` if `model_cfg`'s model could not be loaded here; reads its config only.

    For `lora-repro preflight`: a hub model must be reachable or cached, a local folder must hold safetensors.
    """
    if model_cfg.pretrained is None:
        return
    _from_pretrained(AutoConfig.from_pretrained, model_cfg.pretrained, "model.pretrained",
                     trust_remote_code=model_cfg.trust_remote_code, **_offline_kwargs(model_cfg.pretrained))
    path = Path(resolve_source(model_cfg.pretrained))
    if path.is_dir() and not list(path.glob("*.safetensors")):
        raise UserError(f"model.pretrained: the folder {path} has no safetensors weights; lora-repro loads only "
                        "safetensors. Convert it, e.g. `model.save_pretrained(folder, safe_serialization=True)`")


def _offline_kwargs(source: str, adapter_lookup: bool = False) -> dict[str, Any]:
    """Stay off the network when offline mode is asked for or the hub cannot be reached (`hub`).

    huggingface_hub reads HF_HUB_OFFLINE once, at import; a later setting (a test, a launcher) would
    otherwise be ignored and every file lookup would retry the network for minutes. transformers does not
    pass `local_files_only` on to its adapter_config.json lookup, hence `adapter_kwargs`.
    """
    if source.startswith(PACKAGE_PREFIX) or Path(source).is_dir():
        return {}  # local: no lookup on the hub
    env = (os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if not any(env) and ensure_reachable_or_offline():
        return {}
    kwargs: dict[str, Any] = {"local_files_only": True}
    if adapter_lookup:
        kwargs["adapter_kwargs"] = {"local_files_only": True}
    return kwargs


def _from_pretrained(load: Callable[..., Any], source: str, field: str, **kwargs: Any) -> Any:
    """Call `load(resolve_source(source), **kwargs)`, turning a missing model into one actionable error."""
    path = resolve_source(source)
    try:
        return load(path, **kwargs)
    except SafetensorError as err:  # a corrupt or truncated weights file
        raise UserError(f"{field}: the weights in {path} cannot be read ({err}); replace them") from None
    except (OSError, ValueError) as err:  # ValueError: e.g. a folder without a usable config.json
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if Path(path).is_dir() and list(Path(path).glob("*.bin")) and not list(Path(path).glob("*.safetensors")):
            raise UserError(f"{field}: the folder {path} has no safetensors weights; lora-repro loads only "
                            "safetensors (a pickled pytorch_model.bin can run code when loaded). Convert it, e.g. "
                            "`model.save_pretrained(folder, safe_serialization=True)`") from None
        if Path(path).is_dir():
            raise UserError(f"{field}: could not load from the local folder {path}: {reason}") from None
        if not isinstance(err, OSError):
            raise
        raise UserError(
            f"{field}: {source!r} is not a local folder and could not be downloaded from the Hugging Face "
            f"hub (no network, or HF_HUB_OFFLINE=1) nor found in its cache ({reason}). Fix: give network "
            f"access or pre-download it (`hf download {source}`), or use model=minilm (the packaged offline "
            f"model), or point {field} at a local folder.") from None


def meta_counts(cfg: DictConfig) -> ParamCounts:
    """Parameter counts of `cfg`'s model with its method and task head, built on the meta device.

    No download and no memory: `plan` and the reports count every row this way, the runs themselves on the
    real model (`count_parameters`), and the two agree.
    """
    outputs = num_labels(cfg.task)  # STS-B: one regression output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes, not ours to fix
        built = apply_method(build_model(cfg.model, outputs, device="meta"), cfg.method, cfg.model)
    return count_parameters(built, cfg.method)

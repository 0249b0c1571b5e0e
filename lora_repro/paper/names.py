"""The paper's vocabulary in one place: what it calls methods, tasks, models and weights, and their order.

Reports, the result store and the analysis read these; configs name things by their file names
(`conf/method/lora.yaml` -> `lora`), and this module maps those to what the paper prints.
"""

from __future__ import annotations

__all__ = ["ADAPTER_LABELS", "ADPT_D", "ADPT_H", "ADPT_P", "BITFIT", "FT", "LABEL_ORDER", "LORA", "METHOD_LABELS",
           "PAPER_MODELS", "SETUPS", "TASK_NAMES", "TASK_ORDER", "WEIGHT_ORDER"]

# Method config `name` -> the paper's row label (adapters are told apart by their `variant`). The paper's
# own methods first, then LoRA's successors under their authors' names.
METHOD_LABELS = {"full_ft": "FT", "bitfit": "BitFit", "lora": "LoRA", "dora": "DoRA", "rslora": "rsLoRA",
                 "pissa": "PiSSA", "vera": "VeRA", "ia3": "(IA)³", "adalora": "AdaLoRA"}
ADAPTER_LABELS = {"houlsby": "AdptH", "pfeiffer": "AdptP", "adapterdrop": "AdptD"}
# The labels the reports single out by name (the claims compare them; FT is counted in total parameters).
FT, BITFIT, LORA = METHOD_LABELS["full_ft"], METHOD_LABELS["bitfit"], METHOD_LABELS["lora"]
ADPT_D, ADPT_P, ADPT_H = ADAPTER_LABELS["adapterdrop"], ADAPTER_LABELS["pfeiffer"], ADAPTER_LABELS["houlsby"]
# Rows in the paper's Table 2 order; the successors follow LoRA.
LABEL_ORDER = ("FT", "BitFit", "AdptD", "AdptP", "AdptH", "LoRA", "DoRA", "rsLoRA", "PiSSA", "VeRA", "(IA)³",
               "AdaLoRA")  # appended: the figures' colours follow this order
# The paper's Table 2 columns, in its order, and how it spells each task.
TASK_ORDER = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")
TASK_NAMES = {"mnli": "MNLI", "sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "qqp": "QQP",
              "rte": "RTE", "stsb": "STS-B", "wnli": "WNLI", "mnli-mm": "MNLI-mm"}
# The paper's model names -> ours (conf/model/<name>.yaml).
PAPER_MODELS = {"roberta-base": "roberta_base", "roberta-large": "roberta_large",
                "deberta-v2-xxlarge": "deberta_v2_xxlarge"}
# A run's `setup`: the official LoRA scripts' recipe, or the paper's Houlsby-like setup (its dagger rows).
SETUPS = ("official", "houlsby")
# The weight types, in the paper's order (W_q, W_k, W_v, W_o), then the feed-forward layer some successors adapt.
WEIGHT_ORDER = ("q", "k", "v", "o", "ffn")

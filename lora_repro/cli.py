"""The `lora-repro` command: `train` (a Hydra app), and the tools that read what runs wrote.

    lora-repro train [Hydra overrides]     one run, or a sweep with -m (see conf/config.yaml)
    lora-repro plan  [Hydra overrides]     dry run of a sweep: the runs it would launch, done or not, cost
    lora-repro preflight [Hydra overrides] what would fail once a sweep runs (data, models, GPUs, SLURM, disk)
    lora-repro status SWEEP_DIR            the state of each job of a sweep submitted to SLURM
    lora-repro eval  RUN_DIR               reload a run from its record and evaluate it again
    lora-repro report TABLE [options]      paper tables and figures from run records
    lora-repro bench [options]             training and inference cost per method
    lora-repro analyze [options]           the paper's Section 7 (subspaces, amplification) on LoRA runs
    lora-repro migrate DIR ...             give older run records today's identity (config hash)
    lora-repro --version                   the installed version (also: python -m lora_repro ...)

Bad input is reported as one line and exit status 2 (see lora_repro.errors).
"""

from __future__ import annotations

import atexit
import difflib
import importlib
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from lora_repro.config import CONF_DIR, group_choices
from lora_repro.distributed import is_main_process
from lora_repro.errors import EXIT_USER_ERROR, UserError, choose, user_error_in

# Config groups whose choice is a file name: checked before Hydra starts, so that a typo gets the
# list of valid names and exit status 2 instead of Hydra's composition traceback.
CHOICE_GROUPS = ("task", "method", "model", "train", "data", "logger", "experiment")
COMMANDS = {
    "train": "lora_repro.training.app:main",
    "plan": "lora_repro.training.plan:plan_main",
    "preflight": "lora_repro.training.preflight:preflight_main",
    "status": "lora_repro.training.status:status_main",
    "eval": "lora_repro.training.evaluate:main",
    "report": "lora_repro.report.cli:main",
    "bench": "lora_repro.bench.cli:main",
    "analyze": "lora_repro.analysis.cli:main",
    "migrate": "lora_repro.records.migrate:main",
}


# Settings that moved: Hydra's own error for the old key would suggest appending it with `+`, which fails later.
MOVED_SETTINGS = {"method.learning_rate": "train.learning_rate"}  # one rate per run; method files set its default


def check_choices(overrides: list[str]) -> None:
    """Reject `group=name` overrides (also `group=a,b` sweeps) that name no config file, and moved settings."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if key in MOVED_SETTINGS:
            raise UserError(f"{key} is now {MOVED_SETTINGS[key]}: write {MOVED_SETTINGS[key]}={value}")
        if not sep or key not in CHOICE_GROUPS or "(" in value or value in ("null", ""):
            continue
        for name in value.split(","):
            choose(key.replace("_", " "), name.strip(), group_choices(key))


def config_dirs(args: list[str]) -> list[Path]:
    """The config folders Hydra will read: the package's, and any `--config-dir`/`-cd` on the command line."""
    dirs = [CONF_DIR]
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.partition("=")[2]))
    return dirs


def check_known_settings(overrides: list[str]) -> None:
    """A `key=value` override of a setting no config has is one line naming the closest one.

    Hydra's own message is a block that suggests appending it with `+`, which a typo should not be. Checked against
    the config composed with the command's group choices (a sweep's first); skipped when other config folders or
    configs are named, where keys this package's configs lack may exist.
    """
    if any(arg.startswith(("--config", "-cd", "-cn", "-cp")) for arg in overrides):
        return
    pairs = [override.partition("=")[::2] for override in overrides if "=" in override and override[0] not in "+~-"]
    dotted = [key for key, _ in pairs if "." in key and not key.startswith("hydra.")]
    if not dotted:
        return
    from omegaconf import OmegaConf

    from lora_repro.config import compose_config

    # Unresolved: a recipe's interpolations need not resolve for their keys to exist.
    composed = OmegaConf.to_container(compose_config([f"{key}={value.split(',')[0]}" for key, value in pairs
                                                      if key in CHOICE_GROUPS and "(" not in value]), resolve=False)
    for key in dotted:
        node, parts = composed, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):  # a list or a value below: Hydra judges it
                break
            known = [str(k) for k in node]
            if part not in known:
                close = difflib.get_close_matches(part, known, n=1)
                hint = (f"did you mean {'.'.join([*parts[:depth], close[0]])}?" if close
                        else f"{'.'.join(parts[:depth]) or 'the config'} has {', '.join(known)}")
                raise UserError(f"unknown setting {key}; {hint} (a key of your own: +{key}=...)")
            node = node[part]


def check_config_files(args: list[str]) -> None:
    """Every YAML file Hydra may read parses with its loader, which takes no Python tags; else one line.

    Hydra would stop on such a file too, but with the YAML library's traceback.
    """
    import yaml
    from omegaconf._utils import get_yaml_loader

    for folder in config_dirs(args):
        for file in sorted(folder.rglob("*.yaml")) if folder.is_dir() else []:
            try:
                yaml.load(file.read_text(), Loader=get_yaml_loader())
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
                reason = " ".join(str(err).split())
                raise UserError(f"config file {file} cannot be read as plain YAML ({reason}); fix or remove it "
                                "(configs hold values only, no Python tags)") from None


def check_callbacks(args: list[str]) -> None:
    """A Hydra callback named on the command line must be importable (Hydra's own error is a 6-line block)."""
    from hydra._internal.utils import _locate

    for arg in args:
        key, _, target = arg.lstrip("+~").partition("=")
        if key.startswith("hydra.callbacks.") and key.endswith("._target_") and target:
            try:
                _locate(target)
            except (ImportError, AttributeError, ValueError) as err:
                raise UserError(f"{key}={target}: no such callback class ({type(err).__name__}); name an "
                                "importable class, e.g. lora_repro.training.sweep_summary.SweepSummary") from None


def isolate_torch_cache() -> None:
    """Give torch's compile cache a folder of this command's own, removed when it exits.

    Importing torch with transformers makes `$TMPDIR/torchinductor_<user>`: every command, bad input included, left
    that folder behind. Nothing here compiles, so the cache has nothing worth keeping; the processes this command
    starts (torchrun, joblib) inherit the folder, and this command outlives them.
    """
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:  # the user's own choice
        return
    folder = os.path.join(tempfile.gettempdir(), f"lora-repro-torch-cache-{os.getpid()}")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Dispatch `lora-repro <command> ...`."""
    isolate_torch_cache()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    if argv[0] == "--version":
        print(f"lora-repro {metadata.version('lora-repro')}")
        return
    command, rest = argv[0], argv[1:]
    try:
        choose("command", command, COMMANDS)
        if command in ("train", "plan", "preflight"):
            check_choices(rest)
            check_config_files(rest)
            check_known_settings(rest)
            check_callbacks(rest)
        module, func = COMMANDS[command].split(":")
        entry = getattr(importlib.import_module(module), func)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.argv = [f"lora-repro {command}", *rest]
    try:
        entry()
    except Exception as err:  # every command reports bad input the same way, also from inside a resolver
        if (user_error := user_error_in(err)) is None:
            raise
        if is_main_process():  # every process of a distributed run meets the same bad input: one line
            print(f"error: {user_error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()

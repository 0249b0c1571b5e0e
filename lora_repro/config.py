"""Where the Hydra configs live and how every command composes them, in one place.

`lora_repro/conf` is a link to the repository's `conf/` in a checkout and a copy of it in an installed
wheel, so `lora-repro` finds its configs from any folder either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["CONF_DIR", "compose_config", "config_context", "group_choices", "on_this_machine"]

CONF_DIR = Path(__file__).resolve().parent / "conf"


def group_choices(group: str) -> list[str]:
    """The configs available in `conf/<group>/`."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@contextmanager
def config_context() -> Iterator[None]:
    """Hydra initialised on `CONF_DIR`, for several compositions in a row."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose_config(overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """`conf/config.yaml` composed with `overrides`, as `lora-repro train` would.

    Args:
        overrides: Hydra overrides, e.g. `["model=minilm", "method=lora"]`.
        hydra: Also return the `hydra:` section (sweeper params, launcher).
    """
    with config_context():
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def on_this_machine(recorded: DictConfig, paths: bool = True) -> DictConfig:
    """A recorded run config, moved to this machine (for `eval` and `migrate` of copied or moved runs).

    Its data comes from GLUE_DIR when the recorded folder is not here, and (with `paths`) it writes to this
    invocation's output folders (the tokenized cache among them), never under the folders it was trained in.
    """
    cfg = recorded.copy()
    current = compose_config()
    with open_dict(cfg):
        glue_dir = cfg.data.glue_dir
        if glue_dir and not Path(glue_dir).is_dir() and current.data.glue_dir:
            cfg.data.glue_dir = current.data.glue_dir
        if paths:
            cfg.paths = OmegaConf.to_container(current.paths, resolve=True)
            cfg.data.cache_dir = str(Path(cfg.paths.cache_dir) / Path(current.data.cache_dir).name)
    return cfg

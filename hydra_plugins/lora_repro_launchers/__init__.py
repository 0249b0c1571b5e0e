"""Hydra launchers that start a sweep's dependent runs only after the runs they start from have finished.

The paper starts LoRA on MRPC, RTE and STS-B from the finished MNLI run (`train.init_from=mnli`). A sequential
sweep gets that order by listing MNLI first; a launcher that runs jobs side by side (joblib) or submits them as one
SLURM job array does not, and every dependent run would fail for want of its source. These launchers split a sweep
into two stages, the runs without `train.init_from` and then the rest, and launch the second only when the first
has returned (Hydra's joblib and submitit launchers wait for their jobs). A stage that holds every job is launched
as it is. Selected by `hydra/launcher=parallel | slurm | slurm_local`. They live in the `hydra_plugins` namespace
because Hydra instantiates launchers from no other package.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

__all__ = ["StagedJoblibLauncher", "StagedLocalLauncher", "StagedSlurmLauncher", "dependency_stages"]

log = logging.getLogger(__name__)


def dependency_stages(starts_from: Sequence[str | None]) -> list[list[int]]:
    """Job indices in launch stages: those that start from no other run first, then those that do."""
    first = [i for i, source in enumerate(starts_from) if not source]
    then = [i for i, source in enumerate(starts_from) if source]
    return [stage for stage in (first, then) if stage]


class StagedLaunch:
    """Mixin for a Hydra launcher: launch the sweep in `dependency_stages`, results in the sweep's order."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Launch the jobs that need no other run's result, wait for them, then launch the rest."""
        loader = self.hydra_context.config_loader
        starts_from = [loader.load_sweep_config(self.config, list(overrides)).train.init_from
                       for overrides in job_overrides]
        stages = dependency_stages(starts_from)
        if len(stages) > 1:
            log.info("%d of %d runs start from another run (train.init_from): they are launched once the other "
                     "%d have finished", len(stages[1]), len(job_overrides), len(stages[0]))
        results: dict[int, JobReturn] = {}
        offset = initial_job_idx
        for stage in stages:
            returned = super().launch([job_overrides[i] for i in stage], offset)
            results.update(zip(stage, returned, strict=True))
            offset += len(stage)
        return [results[i] for i in range(len(job_overrides))]


class StagedJoblibLauncher(StagedLaunch, JoblibLauncher):
    """Hydra's joblib launcher (runs side by side on this machine), in dependency stages."""


class StagedSlurmLauncher(StagedLaunch, SlurmLauncher):
    """Hydra's submitit SLURM launcher (one job array per stage), in dependency stages."""


class StagedLocalLauncher(StagedLaunch, LocalLauncher):
    """Hydra's submitit local launcher (the SLURM path on this machine), in dependency stages."""

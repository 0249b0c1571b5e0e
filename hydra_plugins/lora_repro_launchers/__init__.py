"""Hydra launchers that start a sweep's dependent runs only after the runs they start from.

The paper starts LoRA on MRPC, RTE and STS-B from the finished MNLI run (`train.init_from=mnli`). A sequential
sweep gets that order by listing MNLI first; a launcher that runs jobs side by side (joblib) or as one SLURM job
array does not, and every dependent run would fail for want of its source. Selected by
`hydra/launcher=parallel | slurm | slurm_local`. They live in the `hydra_plugins` namespace because Hydra
instantiates launchers from no other package.

* **SLURM** (`StagedSlurmLauncher`): the whole sweep is submitted at once and the launcher returns: the runs that
  start from no other run as one job array, each dependent with `--dependency=afterok:<its source's job>` and
  `--kill-on-invalid-dep=yes`, so SLURM starts it only once its source has succeeded and cancels it if the source
  fails or is killed. Nothing waits on the login node. The jobs are listed in the sweep folder
  (`lora_repro_slurm_jobs.json`); `lora-repro status SWEEP_DIR` shows each one's state. Each job's
  `signal_delay_s` is raised to what its checkpoint needs to be saved before SLURM's time limit
  (`training.estimate.signal_delay_for`), so a preempted run is saved and requeued, not lost.
* **Local** (`StagedJoblibLauncher`, `StagedLocalLauncher`): in two stages, the runs without `train.init_from`
  first, the rest once those have returned. A job that dies (an out-of-memory kill) is one line in the summary.
"""


import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf

from lora_repro.training.status import JOBS_FILE

__all__ = ["JOBS_FILE", "StagedJoblibLauncher", "StagedLocalLauncher", "StagedSlurmLauncher", "dependency_stages",
           "source_jobs"]

log = logging.getLogger(__name__)
LAUNCHER_ONLY = ("gpu_memory_gb",)  # settings of these launchers that submitit does not take


@dataclass  # (no `from __future__ import annotations` here: Hydra's plugin scan cannot resolve string annotations)
class StagedSlurmQueueConf(SlurmQueueConf):
    """Hydra's SLURM launcher settings, and the memory of one GPU of its nodes (for `lora-repro preflight`)."""

    _target_: str = "hydra_plugins.lora_repro_launchers.StagedSlurmLauncher"
    gpu_memory_gb: float | None = 80.0


ConfigStore.instance().store(group="hydra/launcher", name="lora_repro_slurm", node=StagedSlurmQueueConf,
                             provider="lora_repro")


def dependency_stages(starts_from: Sequence[str | None]) -> list[list[int]]:
    """Job indices in launch stages: those that start from no other run first, then those that do."""
    first = [i for i, source in enumerate(starts_from) if not source]
    then = [i for i, source in enumerate(starts_from) if source]
    return [stage for stage in (first, then) if stage]


def source_jobs(configs: Sequence[Any]) -> list[int | None]:
    """For each job, the index of the job in the sweep whose run it starts from (None: none, or one done before)."""
    from lora_repro.training.init_from import start_key

    own = {start_key(cfg): i for i, cfg in enumerate(configs)}
    return [own.get(start_key(cfg, cfg.train.init_from)) if cfg.train.init_from else None for cfg in configs]


class StagedLaunch:
    """Mixin for a Hydra launcher: launch the sweep in `dependency_stages`, results in the sweep's order."""

    def job_configs(self, job_overrides: Sequence[Sequence[str]]) -> list[Any]:
        loader = self.hydra_context.config_loader
        return [loader.load_sweep_config(self.config, list(overrides)) for overrides in job_overrides]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Launch the jobs that need no other run's result, wait for them, then launch the rest."""
        stages = dependency_stages([cfg.train.init_from for cfg in self.job_configs(job_overrides)])
        if len(stages) > 1:
            log.info("%d of %d runs start from another run (train.init_from): they are launched once the other "
                     "%d have finished", len(stages[1]), len(job_overrides), len(stages[0]))
        results: dict[int, JobReturn] = {}
        offset = initial_job_idx
        for stage in stages:
            numbers = list(range(offset, offset + len(stage)))
            returned = self.launch_stage([job_overrides[i] for i in stage], numbers)
            results.update(zip(stage, returned, strict=True))
            offset += len(stage)
        return [results[i] for i in range(len(job_overrides))]

    def launch_stage(self, overrides: list[Sequence[str]], numbers: list[int]) -> list[JobReturn]:
        """Launch one stage's jobs (numbered `numbers` in the sweep) and wait for them."""
        return list(super().launch(overrides, numbers[0]))


class StagedJoblibLauncher(StagedLaunch, JoblibLauncher):
    """Hydra's joblib launcher (runs side by side on this machine), in dependency stages."""


class StagedLocalLauncher(StagedLaunch, LocalLauncher):
    """Hydra's submitit local launcher (the SLURM path on this machine), in dependency stages.

    A job that dies without returning (SIGKILL, as an out-of-memory kill is) is recorded as failed in its job
    folder, so the sweep's summary names it in one line; the runs that start from it then fail for want of it.
    """

    def launch_stage(self, overrides: list[Sequence[str]], numbers: list[int]) -> list[JobReturn]:  # noqa: D102
        executor = submitit_executor(self)
        jobs = executor.map_array(self, *zip(*job_parameters(self, overrides, numbers), strict=True))
        return [job_return(self, job, job_overrides, number)
                for job, job_overrides, number in zip(jobs, overrides, numbers, strict=True)]


class StagedSlurmLauncher(StagedLaunch, SlurmLauncher):
    """Hydra's submitit SLURM launcher: the whole sweep submitted at once, dependents `afterok` on their source."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit every job (sources first, dependents with SLURM dependencies on them) and return at once."""
        configs = self.job_configs(job_overrides)
        sources = source_jobs(configs)
        counted: dict = {}
        delays = [signal_delay(self.params, cfg, counted) for cfg in configs]
        job_ids: dict[int, str] = {}
        groups: dict[tuple[int | None, int], list[int]] = {}
        for i, (source, delay) in enumerate(zip(sources, delays, strict=True)):
            groups.setdefault((source, delay), []).append(i)
        # Sources first (their job ids name the dependencies), one job array per (source, signal delay).
        for (source, delay), members in sorted(groups.items(), key=lambda item: item[0][0] is not None):
            extra = {} if source is None else {"dependency": f"afterok:{job_ids[source]}",
                                               "kill_on_invalid_dep": "yes"}
            executor = submitit_executor(self, extra, delay)
            numbers = [initial_job_idx + i for i in members]
            jobs = executor.map_array(self, *zip(*job_parameters(self, [job_overrides[i] for i in members], numbers),
                                                 strict=True))
            job_ids.update(zip(members, (job.job_id for job in jobs), strict=True))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        listing = [{"job": initial_job_idx + i, "job_id": job_ids[i], "overrides": list(job_overrides[i]),
                    "after": job_ids[sources[i]] if sources[i] is not None else None}
                   for i in range(len(job_overrides))]
        (sweep_dir / JOBS_FILE).write_text(json.dumps(listing, indent=1))
        waiting = sum(source is not None for source in sources)
        print(f"submitted {len(listing)} SLURM jobs ({waiting} start once the job of their source run succeeds; "
              f"cancelled if it fails). Nothing waits here: `lora-repro status {sweep_dir}` shows each one's state")
        return [submitted(self, job_overrides[i], initial_job_idx + i) for i in range(len(job_overrides))]


def signal_delay(params: dict[str, Any], cfg: Any, counted: dict) -> int:
    """The job's `signal_delay_s`: the configured one, or more when its checkpoint takes longer to save."""
    from lora_repro.models import meta_counts
    from lora_repro.training.estimate import signal_delay_for

    key = (OmegaConf.to_yaml(cfg.model), OmegaConf.to_yaml(cfg.method), cfg.task.name)
    if key not in counted:  # counted on the meta device, once per model, method and task
        counted[key] = meta_counts(cfg).trainable
    return signal_delay_for(int(params.get("signal_delay_s") or 120), counted[key])


def submitit_executor(launcher: Any, additional: dict[str, str] | None = None, delay: int | None = None) -> Any:
    """The executor Hydra's submitit launcher would build, with extra sbatch options and signal delay."""
    import submitit

    executor_name = launcher._EXECUTOR
    params = {k: v for k, v in launcher.params.items() if k not in LAUNCHER_ONLY}
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{executor_name}_max_num_timeout"] = params.pop("max_num_timeout")
    if executor_name == "slurm":
        params["additional_parameters"] = {**(params.get("additional_parameters") or {}), **(additional or {})}
        if delay is not None:
            params["signal_delay_s"] = delay
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster=executor_name, **init)
    executor.update_parameters(**{k if k in base else f"{executor_name}_{k}": v for k, v in params.items()})
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return executor


def job_parameters(launcher: Any, overrides: list[Sequence[str]], numbers: list[int]) -> list[tuple]:
    """The arguments of Hydra's submitit launcher's `__call__` for each job."""
    for job_overrides, number in zip(overrides, numbers, strict=True):
        log.info("\t#%d : %s", number, " ".join(filter_overrides(job_overrides)))
    return [(list(job_overrides), "hydra.sweep.dir", number, f"job_id_for_{number}", Singleton.get_state())
            for job_overrides, number in zip(overrides, numbers, strict=True)]


def submitted(launcher: Any, overrides: Sequence[str], number: int) -> JobReturn:
    """What Hydra gets back for a job that was submitted and not waited for."""
    result = JobReturn(overrides=list(overrides), working_dir=str(Path(str(launcher.config.hydra.sweep.dir))
                                                                  / str(number)))
    result.status, result.return_value = JobStatus.COMPLETED, None
    return result


def job_return(launcher: Any, job: Any, overrides: Sequence[str], number: int) -> JobReturn:
    """The job's result; a job that died is recorded as failed for the sweep's summary instead of raising."""
    import submitit

    try:
        return job.results()[0]
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as err:
        from lora_repro.training.sweep_summary import OUTCOME_FILE

        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        output = Path(str(launcher.config.hydra.sweep.dir)) / str(number)
        output.mkdir(parents=True, exist_ok=True)
        (output / OUTCOME_FILE).write_text(json.dumps({"status": "failed", "overrides": list(overrides),
                                                       "detail": f"job {job.job_id} ended without a result "
                                                                 f"(killed?): {reason}", "value": float("nan")}))
        result = JobReturn(overrides=list(overrides), working_dir=str(output))
        result.status, result.return_value = JobStatus.COMPLETED, float("nan")
        return result

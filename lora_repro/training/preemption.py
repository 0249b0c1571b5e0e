"""Save at once when SLURM warns of a time limit or preemption, instead of losing up to an epoch.

SLURM sends submitit's signal (USR2, or `SUBMITIT_PREEMPT_SIGNAL`) `signal_delay_s` seconds before a job's time
limit, and on preemption. submitit's handler requeues the job and exits wherever training is, so the requeued run
would resume from its last epoch's checkpoint. Here the handler only notes the signal: the Trainer finishes the
optimizer step, saves a checkpoint mid-epoch, and stops; `fit` then hands the signal on to submitit's handler,
which requeues the job (outside submitit the process exits with 128 + the signal). The requeued run resumes from
that checkpoint to the numbers of an uninterrupted run. `kill -USR2 <pid>` does the same by hand.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import NoReturn

from transformers import TrainerCallback

from lora_repro.distributed import any_process

__all__ = ["Preempted", "SaveOnSignal"]


class Preempted(SystemExit):
    """The process leaves after a preemption signal, its run saved in a checkpoint.

    The record stays `running`, as for a killed run, and the rerun (submitit's requeue) resumes it.
    """


def preempt_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send (`SUBMITIT_PREEMPT_SIGNAL`, USR2 by default)."""
    return signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2').removeprefix('SIG')}"]


class SaveOnSignal(TrainerCallback):
    """Notes the preemption signal; at the end of that optimizer step, saves a checkpoint and stops training."""

    def __init__(self) -> None:
        self.signal = preempt_signal()
        self.received = self.stopped = False
        self.previous: object = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        if threading.current_thread() is threading.main_thread():  # Python takes signals in the main thread only
            self.previous = signal.signal(self.signal, self.note)

    def note(self, signum: int, frame: object) -> None:
        """The signal handler: only remember; the step in progress finishes first."""
        self.received = True

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        # Under DDP the processes agree at every step, so that all of them stop after the same one.
        if any_process(self.received, args.device):
            self.stopped = True
            control.should_save = control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        if self.stopped:  # the epoch is not over: no end-of-epoch evaluation, log or second save
            control.should_evaluate = control.should_log = control.should_save = False

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        self.restore()

    def restore(self) -> None:
        """Give the signal back to the handler it had before training (submitit's, or the default)."""
        if self.previous is not None:
            signal.signal(self.signal, self.previous)

    def hand_over(self) -> NoReturn:
        """After the checkpoint is saved: let submitit requeue the job, or exit as the signal would have."""
        self.restore()
        code = 128 + self.signal
        if callable(self.previous):
            try:
                self.previous(self.signal, None)  # submitit's: requeues the job, then exits
            except SystemExit as exit_:
                code = exit_.code
        raise Preempted(code)

"""What every trainer in the worker shares: the optimizer and its schedule, the update with
its finite-loss check, step events with speed and ETA, and resumable checkpoints.

A trainer subclasses `StepLoop`, sets `model`, `total_steps` and the optimizer (via
`start_optimizer`) in `prepare()`, and says how its weights are saved (`save_weights`) and
loaded back (`load_weights`); extra state it must carry across a resume goes through
`extra_state` / `restore_extra`.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from pathlib import Path

from core.training.distributed import Ranks
from core.training.events import COMPLETE_CHECKPOINT, RunFolder
from core.training.spec import TrainingSpec

KEEP_CHECKPOINTS = 2


class NonFiniteLoss(RuntimeError):
    pass


class StepLoop:
    def __init__(self, run: RunFolder, events, stop: threading.Event, ranks: Ranks) -> None:
        self.run, self.events, self.stop, self.ranks = run, events, stop, ranks
        self.spec = TrainingSpec.from_dict(run.read_json(run.spec_path))
        self.job = run.read_json(run.job_path)
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0  # time spent before a resume, for the run's total duration
        self.started = time.monotonic()

    # --- what a trainer provides ------------------------------------------------------------

    def save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    def load_weights(self, folder: Path) -> None:
        """Weights from a checkpoint folder; a trainer that loads them in prepare() skips it."""

    def extra_state(self) -> dict:
        return {}

    def restore_extra(self, state: dict) -> None:
        pass

    # --- shared machinery -------------------------------------------------------------------

    def start_optimizer(self, params) -> None:
        import torch
        from transformers import get_scheduler

        self.optimizer = torch.optim.AdamW(params, lr=self.spec.learning_rate,
                                           weight_decay=self.spec.weight_decay)
        self.scheduler = get_scheduler(
            self.spec.schedule, self.optimizer,
            num_warmup_steps=int(self.spec.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.eval_every = self.spec.eval_every or max(1, self.total_steps // 10)

    def update(self, params, loss: float, *, what: str = "training loss",
               advice: str = "lower the learning rate or check the data") -> None:
        """Clip and apply the step's gradients, unless the loss is not finite."""
        import torch

        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the {what} became {loss} at step {self.step + 1}; {advice}")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def emit_step(self, loss: float, *, start_step: int, tokens_here: int, **details) -> None:
        elapsed = time.monotonic() - self.started
        per_step = elapsed / max(self.step - start_step, 1)
        self.events.emit(
            "step", step=self.step, total_steps=self.total_steps, loss=loss,
            lr=self.scheduler.get_last_lr()[0], tokens=self.tokens_seen,
            tokens_per_s=tokens_here / max(elapsed, 1e-9),
            progress=self.step / self.total_steps,
            eta_s=per_step * (self.total_steps - self.step), elapsed_s=elapsed, **details,
        )

    def due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.total_steps

    def save_checkpoint(self) -> None:
        """Write into a staging folder and rename it: a folder named step-N is always whole."""
        import torch

        final = self.run.checkpoints_dir / f"step-{self.step:06d}"
        if (final / COMPLETE_CHECKPOINT).is_file():
            return
        staging = self.run.checkpoints_dir / f".partial-{self.step:06d}"
        shutil.rmtree(staging, ignore_errors=True)
        self.save_weights(staging)
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": torch.get_rng_state(), "step": self.step, "tokens": self.tokens_seen,
                 "elapsed_s": self.elapsed_before + time.monotonic() - self.started,
                 **self.extra_state()}
        torch.save(state, staging / COMPLETE_CHECKPOINT)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in sorted(self.run.checkpoints_dir.glob("step-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        self.events.emit("checkpoint", step=self.step)

    def load_checkpoint(self, folder: Path) -> None:
        import torch

        self.load_weights(folder)
        state = torch.load(folder / COMPLETE_CHECKPOINT, weights_only=True)  # never unpickle code
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step, self.tokens_seen = state["step"], state["tokens"]
        self.elapsed_before = state.get("elapsed_s", 0.0)
        self.restore_extra(state)
        self.events.emit("log", message=f"resumed from checkpoint at step {self.step}")

    def replace_output(self, write) -> None:
        """Write the run's output through a staging folder, so it appears whole or not at all."""
        staging = self.run.path / ".adapter.partial"
        shutil.rmtree(staging, ignore_errors=True)
        write(staging)
        shutil.rmtree(self.run.adapter_dir, ignore_errors=True)
        os.replace(staging, self.run.adapter_dir)

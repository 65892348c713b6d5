"""The training process: `python -m core.training.worker RUN_DIR`.

Reads the run folder the runner wrote, trains with the trainer for its kind and reports
through `events.jsonl`; it never opens the studio's database. SIGTERM asks it
to stop: it finishes the current step, saves a checkpoint and the adapter, and
exits 0. Exit codes: 0 completed or stopped, 1 crashed, 3 loss not finite, 4 out of memory.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from core.settings import process_variable
from core.training.distributed import close_ranks, init_ranks
from core.training.events import EventWriter, RunFolder
from core.training.loop import NonFiniteLoss
from core.training.lora import Trainer

EXIT_CRASH, EXIT_NAN, EXIT_OOM = 1, 3, 4
# Caps the worker's address space (MB): too big a job then fails as "oom" instead of
# dragging the machine into swap or the kernel's OOM killer.
MEMORY_LIMIT_ENV = "REFINERY_TRAIN_MEMORY_MB"


class SilentEvents:
    """What ranks other than 0 write: nothing (rank 0 speaks for the run)."""

    def emit(self, event_type: str, /, **payload) -> None:
        pass

    def close(self) -> None:
        pass


def limit_memory() -> None:
    megabytes = int(process_variable(MEMORY_LIMIT_ENV, "0"))
    if megabytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))


def out_of_memory(error: BaseException) -> bool:
    """torch's CUDA allocator raises OutOfMemoryError; its CPU allocator a plain RuntimeError."""
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" \
        or "can't allocate memory" in str(error)


def configure_threads() -> None:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = max(1, (cores or 1) // int(process_variable("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(int(process_variable("REFINERY_TRAIN_THREADS", str(per_process))))


def trainer_class(kind: str) -> type:
    """The trainer for a dataset kind; each has prepare(), fit() -> metrics, step, total_steps."""
    if kind == "preference":
        from core.training.preference import PreferenceTrainer

        return PreferenceTrainer
    if kind == "embedding":
        from core.training.embedding import EmbeddingTrainer

        return EmbeddingTrainer
    return Trainer


def finish(run: RunFolder, events, status: str, *, marker: bool, **details) -> None:
    """Report the outcome; rank 0 alone writes the done marker."""
    events.emit(status, **details)
    if marker:
        run.write_json(run.result_path, {"status": status, **details})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m core.training.worker RUN_DIR", file=sys.stderr)
        return 2
    run = RunFolder(Path(argv[1]))
    ranks = init_ranks()
    if ranks.main:
        run.result_path.unlink(missing_ok=True)
    events = EventWriter(run.events_path) if ranks.main else SilentEvents()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def fail(kind: str, message: str, code: int) -> int:
        finish(run, events, "failed", marker=ranks.main, kind=kind, message=message)
        return code

    try:
        limit_memory()
        configure_threads()
        trainer = trainer_class(run.read_json(run.job_path)["kind"])(run, events, stop, ranks)
        trainer.prepare()
        metrics = trainer.fit()
        status = "stopped" if stop.is_set() and trainer.step < trainer.total_steps else "completed"
        finish(run, events, status, marker=ranks.main, metrics=metrics)
        close_ranks(ranks)
        return 0
    except NonFiniteLoss as error:
        return fail("nan", str(error), EXIT_NAN)
    except Exception as error:
        if out_of_memory(error):
            return fail("oom", "out of memory: lower batch_size or max_length", EXIT_OOM)
        traceback.print_exc()
        return fail("crash", f"{type(error).__name__}: {error}", EXIT_CRASH)
    finally:
        events.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

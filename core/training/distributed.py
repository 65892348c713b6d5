"""Several processes, one run: data-parallel training under `torchrun` (or `accelerate launch`).

Each process takes every world-th micro-batch of an optimizer step; the LoRA
gradients (a few MB) are summed across processes before the step, so the update
equals the one-process update. Only rank 0 writes events, checkpoints and the
adapter. With WORLD_SIZE unset this is one plain process.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import process_variable


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_ranks() -> Ranks:
    world = int(process_variable("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(process_variable("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Ranks(dist.get_rank(), world, local)


def sum_across(ranks: Ranks, values: list[float], device: str) -> list[float]:
    if not ranks.distributed:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_gradients(ranks: Ranks, parameters) -> None:
    if not ranks.distributed:
        return
    import torch
    import torch.distributed as dist

    for parameter in parameters:
        if parameter.grad is None:  # this rank had no micro-batch in the step
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad)


def close_ranks(ranks: Ranks) -> None:
    """Leave together: rank 0 saves and evaluates after the loop, and a rank that tears its
    connections down meanwhile can make gloo abort the other one (SIGABRT)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()

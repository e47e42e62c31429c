"""Data-parallel processes: who this process is, and the few collectives the trainers need.

We use torch.distributed directly rather than accelerate: our training loops are our own (length-
grouped batches, token-level loss, rank-0 checkpoints), they need only a process group, DDP and
three collectives, and on CPU `accelerate launch --cpu --num_processes 2` starts only one process
(seen here), while `torchrun --nproc_per_node N` starts N with gloo. A job runs under torchrun
(the runner or `workbench run` launch ``torchrun ... -m workbench.cli jobs exec ID``), which sets
RANK, LOCAL_RANK and WORLD_SIZE; without them a job is one process and nothing here costs a thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dist:
    """This process's place among a job's data-parallel processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def device(self, device: str) -> str:
        """Each process its own GPU (``cuda`` -> ``cuda:LOCAL_RANK``); CPU processes share the CPU."""
        return f"cuda:{self.local_rank}" if self.parallel and device == "cuda" else device


SINGLE = Dist()


def from_env() -> Dist:
    """The process's rank and world size as torchrun gives them (one process without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(dist: Dist) -> None:
    """Join the job's process group (gloo on CPU; NCCL for CUDA tensors where there are GPUs)."""
    if not dist.parallel:
        return
    import torch
    import torch.distributed as td

    if td.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        td.init_process_group("cpu:gloo,cuda:nccl")
    else:
        td.init_process_group("gloo")


def broadcast(value: Any, dist: Dist) -> Any:
    """Rank 0's ``value`` in every process (any picklable object)."""
    if not dist.parallel:
        return value
    import torch.distributed as td

    box = [value]
    td.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.parallel:
        import torch.distributed as td

        td.barrier()


def all_sum(values: list[float], dist: Dist) -> list[float]:
    """Element-wise sum over the processes (float64, on the CPU)."""
    if not dist.parallel:
        return values
    import torch
    import torch.distributed as td

    t = torch.tensor(values, dtype=torch.float64)
    td.all_reduce(t)
    return [float(v) for v in t]


def any_true(flag: bool, dist: Dist) -> bool:
    """True when any process says so (a stop request seen by one process stops them all, together)."""
    return bool(all_sum([1.0 if flag else 0.0], dist)[0] > 0) if dist.parallel else flag


def shard(items: list[Any], dist: Dist) -> list[Any]:
    """This process's share of ``items`` (every world-th, from its rank)."""
    return items[dist.rank :: dist.world] if dist.parallel else items


def finish(dist: Dist) -> None:
    if dist.parallel:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()

"""Data-parallel training with torch.distributed (``torchrun``; NCCL on GPUs, gloo on CPUs).

Each process takes an equal slice of every global batch, DDP averages the gradients,
and batch norm uses the statistics of the global batch, so N processes follow the same
trajectory as one process with the same global batch (to float round-off).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def join(device: str) -> tuple[World, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment."""
    import torch.distributed as dist

    needed = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    missing = [v for v in needed if v not in os.environ]
    if missing and not dist.is_initialized():
        raise ValueError(
            f"distributed: expected to run under torchrun (environment lacks {missing}); e.g. "
            "torchrun --nproc-per-node 4 -m xcrai.cli fit ... --distributed"
        )
    world = World(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
        return world, torch.device("cuda", world.local_rank)
    return world, torch.device("cpu")


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the global batch of all processes, on any device.

    ``torch.nn.SyncBatchNorm`` works on GPUs only; this one all-reduces the sums
    (differentiably) and so also runs with gloo on CPUs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        local = torch.cat(
            [x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / x.shape[1])]
        )
        total = all_reduce(local)
        channels = x.shape[1]
        count = total[-1]
        mean = total[:channels] / count
        var = total[channels : 2 * channels] / count - mean * mean
        with torch.no_grad():
            # set by BatchNorm2d's default track_running_stats=True, which xcrai keeps
            tracked = cast(torch.Tensor, self.num_batches_tracked)
            running_mean = cast(torch.Tensor, self.running_mean)
            running_var = cast(torch.Tensor, self.running_var)
            tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 0.1
            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            unbiased = var.detach() * count / (count - 1)
            running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape)


def globalize_batch_norm(net: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm layers of ``net`` over the global batch: SyncBatchNorm on GPUs,
    :class:`GlobalBatchNorm2d` elsewhere. The weights are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.BatchNorm2d:
                replacement = GlobalBatchNorm2d(child.num_features, eps=child.eps)
                replacement.load_state_dict(child.state_dict())
                setattr(module, name, replacement)
    return net


def average(value: float, world: World | None) -> float:
    """Mean of ``value`` over processes (for logged losses)."""
    if world is None or world.size == 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / world.size

"""Initial weights of the network's convolutions: CRAI's choices (no xarray here)."""

from __future__ import annotations

import torch

from xcrai.choices import check_init


def initialize(net: torch.nn.Module, init: str) -> None:
    """CRAI's initialisations of convolution weights (biases zero); "torch" keeps PyTorch's."""
    if check_init(init) == "torch":
        return
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            if init == "kaiming":
                torch.nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            elif init == "gaussian":
                torch.nn.init.normal_(module.weight, 0.0, 0.02)
            elif init == "xavier":
                torch.nn.init.xavier_normal_(module.weight, gain=2**0.5)
            else:
                torch.nn.init.orthogonal_(module.weight, gain=2**0.5)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

"""Perceptual and style loss terms on VGG16 features, from a local weights file only.

CRAI (after Liu et al. 2018) compares the first three pooling stages of an ImageNet VGG16
for the output, the composite and the truth: an L1 distance between the features
(perceptual) and between their Gram matrices (style). CRAI downloads the weights at run
time; xcrai never downloads anything: pass the path of torchvision's VGG16 state dict
(``vgg16-397923af.pth``, keys ``features.N.weight``/``bias``), read with
``weights_only=True``. Fields enter as three identical channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xcrai.files import load_torch_file

#: VGG16's convolutions up to the third pooling stage: (index in ``features``, in, out)
VGG16_CONVS: tuple[tuple[int, int, int], ...] = (
    (0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
    (14, 256, 256),
)  # fmt: skip
POOLS: tuple[int, ...] = (4, 9, 16)


class VGG16Features(nn.Module):
    """The pool1, pool2 and pool3 features of VGG16, frozen."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        convs = {index: (cin, cout) for index, cin, cout in VGG16_CONVS}
        for index in range(POOLS[-1] + 1):
            if index in convs:
                layers.append(nn.Conv2d(*convs[index], kernel_size=3, padding=1))
            elif index in POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> VGG16Features:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vgg_weights: no file at {str(path)!r}")
        state = load_torch_file(path, "vgg_weights", "PyTorch state dict")
        model = cls()
        wanted = model.state_dict().keys()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(
                f"vgg_weights: {str(path)!r} is not a torchvision VGG16 state dict "
                f"(missing {missing[:3]})"
            )
        try:
            model.load_state_dict({k: state[k] for k in wanted})
        except RuntimeError as error:
            raise ValueError(f"vgg_weights: shapes differ from VGG16's: {error}") from None
        return model.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.expand(-1, 3, -1, -1)
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in POOLS:
                out.append(x)
        return out


def gram(features: torch.Tensor) -> torch.Tensor:
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def perceptual_style(
    vgg: VGG16Features, out: torch.Tensor, composite: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(perceptual, style) terms: L1 of features and of their Gram matrices, for the
    output and the composite against the truth, summed over the three stages."""
    truth = [f.detach() for f in vgg(gt)]
    perceptual = out.new_zeros(())
    style = out.new_zeros(())
    for image in (out, composite):
        for feature, target in zip(vgg(image), truth, strict=True):
            perceptual = perceptual + (feature - target).abs().mean()
            style = style + (gram(feature) - gram(target)).abs().mean()
    return perceptual, style

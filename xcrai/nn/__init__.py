"""The partial-convolution networks: layers, the U-Net and CRAI's recurrent and attention
networks (no xarray here)."""

from xcrai.nn.crainet import CraiNet, CraiNetConfig
from xcrai.nn.pconv import PartialConv2d, wrap_longitude
from xcrai.nn.unet import LayerConfig, PartialConvUNet, UNetConfig

__all__ = [
    "CraiNet",
    "CraiNetConfig",
    "LayerConfig",
    "PartialConv2d",
    "PartialConvUNet",
    "UNetConfig",
    "wrap_longitude",
]

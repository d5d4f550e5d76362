"""The partial-convolution network: layers and the U-Net (no xarray here)."""

from xcrai.nn.pconv import PartialConv2d, wrap_longitude
from xcrai.nn.unet import LayerConfig, PartialConvUNet, UNetConfig

__all__ = ["LayerConfig", "PartialConv2d", "PartialConvUNet", "UNetConfig", "wrap_longitude"]

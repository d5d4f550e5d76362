"""The partial-convolution networks: layers, the U-Net and CRAI's recurrent and attention
networks, and the registry that says what each one can do (no xarray here)."""

from xcrai.nn.crainet import CraiNet, CraiNetConfig
from xcrai.nn.pconv import PartialConv2d, wrap_longitude
from xcrai.nn.registry import (
    DESIGNS,
    NETWORKS,
    Architecture,
    Design,
    Network,
    architecture_from_crai,
    architecture_from_dict,
    build_network,
    bytes_per_field,
    is_architecture,
    network,
)
from xcrai.nn.unet import LayerConfig, PartialConvUNet, UNetConfig

__all__ = [
    "DESIGNS",
    "NETWORKS",
    "Architecture",
    "CraiNet",
    "CraiNetConfig",
    "Design",
    "LayerConfig",
    "Network",
    "PartialConv2d",
    "PartialConvUNet",
    "UNetConfig",
    "architecture_from_crai",
    "architecture_from_dict",
    "build_network",
    "bytes_per_field",
    "is_architecture",
    "network",
    "wrap_longitude",
]

"""SimSiam: a backbone, a projector MLP and a predictor MLP (Chen & He, 2021)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor, nn

from trainables.validation import check_choice, check_range

BackboneFactory = Callable[[bool], tuple[nn.Module, int]]
"""Builds a headless backbone and gives its feature width; the flag is ``zero_init_residual``."""
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    def add(factory: BackboneFactory) -> BackboneFactory:
        BACKBONES[name] = factory
        return factory

    return add


def _headless(net: nn.Module) -> tuple[nn.Module, int]:
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


@register_backbone("resnet18")
def resnet18(zero_init_residual: bool) -> tuple[nn.Module, int]:
    from torchvision import models

    return _headless(models.resnet18(weights=None, zero_init_residual=zero_init_residual))


@register_backbone("resnet50")
def resnet50(zero_init_residual: bool) -> tuple[nn.Module, int]:
    from torchvision import models

    return _headless(models.resnet50(weights=None, zero_init_residual=zero_init_residual))


@register_backbone("resnet18-cifar")
def resnet18_cifar(zero_init_residual: bool) -> tuple[nn.Module, int]:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 32 px images."""
    from torchvision import models

    net = models.resnet18(weights=None, zero_init_residual=zero_init_residual)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return _headless(net)


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_backbone("small")
def small(zero_init_residual: bool, width: int = 32) -> tuple[nn.Module, int]:
    """A five-layer CNN sized for CPU runs on the bundled 32-64 px data (no residual branches,
    so ``zero_init_residual`` has nothing to act on)."""
    net = nn.Sequential(
        OrderedDict(
            stem=_conv_block(3, width, 1),
            down1=_conv_block(width, 2 * width, 2),
            block1=_conv_block(2 * width, 2 * width, 1),
            down2=_conv_block(2 * width, 4 * width, 2),
            block2=_conv_block(4 * width, 4 * width, 1),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    return net, 4 * width


@dataclass(frozen=True)
class ModelConfig:
    """Backbone name and head sizes. ``projector_layers=2`` is SimSiam's CIFAR variant.
    ``zero_init_residual`` starts each ResNet residual branch's last BatchNorm at zero, as the
    official SimSiam builder does."""

    backbone: str = "resnet18-cifar"
    projector_dim: int = 2048
    projector_layers: int = 3
    predictor_hidden_dim: int = 512
    zero_init_residual: bool = True

    def __post_init__(self) -> None:
        check_choice("model.backbone", self.backbone, BACKBONES)
        check_range("model.projector_dim", self.projector_dim, 1, integer=True)
        check_range("model.projector_layers", self.projector_layers, 1, 3, integer=True)
        check_range("model.predictor_hidden_dim", self.predictor_hidden_dim, 1, integer=True)


def projection_mlp(in_dim: int, dim: int, layers: int) -> nn.Sequential:
    """``layers`` Linear+BN blocks of width ``dim``, ReLU between them, the last BN without
    affine."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_dim
    for index in range(1, layers):
        blocks[f"hidden{index}"] = nn.Sequential(
            nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)
        )
        width = dim
    blocks["output"] = nn.Sequential(
        nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim, affine=False)
    )
    return nn.Sequential(blocks)


def prediction_mlp(dim: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            hidden=nn.Sequential(
                nn.Linear(dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ),
            output=nn.Linear(hidden_dim, dim),
        )
    )


class SimSiamOutput(NamedTuple):
    p1: Tensor
    p2: Tensor
    z1: Tensor
    z2: Tensor


class SimSiam(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.backbone, self.feature_dim = BACKBONES[config.backbone](config.zero_init_residual)
        self.projector = projection_mlp(
            self.feature_dim, config.projector_dim, config.projector_layers
        )
        self.predictor = prediction_mlp(config.projector_dim, config.predictor_hidden_dim)

    def encode(self, images: Tensor) -> Tensor:
        """Backbone features, the representation evaluated by kNN."""
        return self.backbone(images)

    def forward(self, view1: Tensor, view2: Tensor) -> SimSiamOutput:
        z1, z2 = self.projector(self.encode(view1)), self.projector(self.encode(view2))
        return SimSiamOutput(self.predictor(z1), self.predictor(z2), z1, z2)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

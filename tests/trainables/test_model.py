import pytest
import torch
from torch import nn

from trainables.model import BACKBONES, ModelConfig, SimSiam, count_parameters
from trainables.validation import ConfigError


@pytest.mark.parametrize(
    ("backbone", "features", "side"),
    [
        ("small", 128, 32),
        ("resnet18-cifar", 512, 32),
        ("resnet18", 512, 64),
        ("resnet50", 2048, 64),
    ],
)
def test_backbones_give_features_of_their_dimension(backbone, features, side):
    model = SimSiam(
        ModelConfig(backbone=backbone, projector_dim=64, predictor_hidden_dim=16)
    ).eval()
    assert model.feature_dim == features
    with torch.no_grad():
        assert model.encode(torch.randn(2, 3, side, side)).shape == (2, features)


def test_cifar_resnet_has_a_small_stem_and_no_max_pool():
    backbone, _ = BACKBONES["resnet18-cifar"](True)
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, nn.Identity)
    trunk = nn.Sequential(*list(backbone.children())[:-2])
    assert trunk(torch.randn(1, 3, 32, 32)).shape[-2:] == (4, 4)
    imagenet, _ = BACKBONES["resnet18"](True)
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)


def linear_layers(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def batch_norms(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_projector_and_predictor_follow_the_official_architecture():
    model = SimSiam(ModelConfig(backbone="resnet50"))
    projector = linear_layers(model.projector)
    assert [(layer.in_features, layer.out_features) for layer in projector] == [(2048, 2048)] * 3
    norms = batch_norms(model.projector)
    assert len(norms) == 3
    assert all(norm.affine for norm in norms[:-1]) and not norms[-1].affine
    predictor = linear_layers(model.predictor)
    assert [(layer.in_features, layer.out_features) for layer in predictor] == [
        (2048, 512),
        (512, 2048),
    ]
    assert isinstance(model.predictor.output, nn.Linear) and model.predictor.output.bias is not None


def test_cifar_variant_uses_a_two_layer_projector():
    model = SimSiam(ModelConfig(backbone="resnet18-cifar", projector_layers=2))
    assert [
        (layer.in_features, layer.out_features) for layer in linear_layers(model.projector)
    ] == [(512, 2048), (2048, 2048)]
    assert not batch_norms(model.projector)[-1].affine


def test_forward_returns_predictions_and_projections_of_both_views():
    model = SimSiam(ModelConfig(backbone="small", projector_dim=32, predictor_hidden_dim=8))
    output = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    assert all(t.shape == (4, 32) for t in output)
    assert not torch.allclose(output.z1, output.z2)
    assert torch.allclose(
        model.projector(model.encode(torch.zeros(4, 3, 32, 32))).mean(0), torch.zeros(32), atol=1e-5
    )


def test_small_backbone_is_small():
    assert count_parameters(BACKBONES["small"](True)[0]) < 400_000


@pytest.mark.parametrize(
    ("field", "value"), [("backbone", "vit"), ("projector_layers", 0), ("projector_dim", -1)]
)
def test_bad_model_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"model.{field}"):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("backbone", ["resnet18", "resnet18-cifar", "resnet50"])
def test_resnet_residual_branches_start_at_zero_as_the_official_builder(backbone):
    from torchvision.models.resnet import BasicBlock, Bottleneck

    def last_norm_weights(config):
        blocks = [
            m for m in SimSiam(config).backbone.modules() if isinstance(m, (BasicBlock, Bottleneck))
        ]
        return torch.cat(
            [
                (block.bn3 if isinstance(block, Bottleneck) else block.bn2).weight.detach()
                for block in blocks
            ]
        )

    official = last_norm_weights(ModelConfig(backbone=backbone))
    assert torch.equal(official, torch.zeros_like(official))
    upstream_default = last_norm_weights(ModelConfig(backbone=backbone, zero_init_residual=False))
    assert torch.equal(upstream_default, torch.ones_like(upstream_default)), (
        "configurable: off keeps torchvision's ones"
    )

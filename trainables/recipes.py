"""Named training recipes: complete configurations that a study or a user starts from."""

from __future__ import annotations

import copy
from typing import Any

from trainables.config import TrainConfig, apply_overrides
from trainables.validation import check_choice

BUNDLED_CROPS = {"family": "random_crop", "params": {"distribution": "area_first"}}
"""The bundled recipes' crops: area first (uniform area, aspect narrowed to fit), the distribution
they were tuned and measured on. The exact torchvision crop scored 0.277 against 0.254 for the
untrained encoder on patterns-quick seed 0 (0.604 with area first), so they keep it until they
are re-tuned on the exact one; every other recipe crops as RandomResizedCrop does."""

RECIPES: dict[str, dict[str, Any]] = {
    # SimSiam's CIFAR recipe (its appendix): ResNet-18 with a CIFAR stem, a 2-layer projector,
    # SGD lr 0.03 * batch / 256, momentum 0.9, weight decay 5e-4, cosine decay. The paper trains
    # CIFAR and STL-10 for 400 epochs.
    "cifar": {
        "data": {"dataset": "cifar10"},
        "views": {"family": "random_crop", "size": 32},
        "model": {"backbone": "resnet18-cifar", "projector_layers": 2},
        "optim": {"base_lr": 0.03, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"},
        "batch_size": 512,
        "epochs": 400,
    },
    # SimSiam's ImageNet recipe on ImageNet-100 at 224 px (the paper: 200 epochs): ResNet-50,
    # 3-layer projector, lr 0.05 * batch / 256, weight decay 1e-4, fixed predictor lr, blur.
    "imagenet": {
        "data": {"dataset": "imagenet100"},
        "views": {"family": "random_crop", "size": 224},
        "photometric": {"blur_p": 0.5},
        "model": {"backbone": "resnet50", "projector_layers": 3},
        "optim": {"base_lr": 0.05, "weight_decay": 1e-4, "fix_predictor_lr": True},
        "batch_size": 512,
        "epochs": 200,
        "loader_workers": 8,
    },
    # A CPU-sized recipe on the bundled digits: the `small` CNN, narrow heads and 16 px views
    # (the digits are 8 x 8 at source). No flips: digits are not mirror-symmetric.
    "digits": {
        "data": {"dataset": "digits"},
        "views": {**BUNDLED_CROPS, "size": 16},
        "photometric": {"flip_p": 0.0},
        "model": {
            "backbone": "small",
            "projector_dim": 512,
            "projector_layers": 2,
            "predictor_hidden_dim": 128,
        },
        "optim": {"base_lr": 0.5},
        "batch_size": 32,
        "epochs": 20,
    },
    # The CPU-sized recipe of the bundled benchmark (`patterns`): the `small` CNN with narrow
    # heads at 32 px, SimSiam's CIFAR photometric recipe (flips keep every motif's class).
    "patterns": {
        "data": {"dataset": "patterns"},
        "views": {**BUNDLED_CROPS, "size": 32},
        "model": {
            "backbone": "small",
            "projector_dim": 512,
            "projector_layers": 2,
            "predictor_hidden_dim": 128,
        },
        # A 5-epoch warm-up brought the 3 seeds' spread from 0.018 to 0.003 at 36 epochs; 32 epochs
        # keep it at 0.011 within the 10 minutes on 2 cores (bench/RESULTS.md, benchmark 6).
        "optim": {"base_lr": 0.5, "warmup_epochs": 5},
        "batch_size": 128,
        "epochs": 32,
    },
}
# The `patterns` recipe cut to a laptop sweep's trial (`study demo`, the `-bundled` presets): about
# 75 s of one CPU core per trial, two trials at a time on 2 cores. 16 px views cost a quarter of
# 32 px ones, batches of 32 give the steps that learning needs to start (4 epochs of batch 64 at
# 32 px stayed below the untrained encoder), and a stronger colour jitter (any hue, grayscale half
# the time) makes it start within those 8 epochs (bench/RESULTS.md, benchmark 6).
RECIPES["patterns-quick"] = {
    **RECIPES["patterns"],
    "views": {**BUNDLED_CROPS, "size": 16},
    "photometric": {"hue": 0.5, "saturation": 0.8, "grayscale_p": 0.5},
    "optim": {"base_lr": 0.5},  # no warm-up: 8 epochs are too few to give any away
    "batch_size": 32,
    "epochs": 8,
}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """The named recipe with dotted-path overrides, e.g. ``recipe("cifar", **{"epochs": 800})``."""
    data = copy.deepcopy(RECIPES[check_choice("recipe", name, RECIPES)])
    apply_overrides(data, overrides)
    return TrainConfig.from_dict(data)

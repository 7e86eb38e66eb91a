"""Benchmark 2: training throughput, the full SimSiam step against the model-only step.

Full step: the real training code on uint8 source images held in memory, ``view_batches``
(``TwoViewTransform.batch``: the family's views and the photometric recipe, one batch at a time)
feeding ``train_epoch`` (``normalize``, forward, loss, backward, SGD step, epoch statistics).
Model-only step: the same forward, loss, backward and SGD step on views made and normalised
before timing, the physical limit of the step. Timed side by side per (backbone, view size),
overlap views; ``--compile`` adds the model-only step of ``torch.compile(model)``. On CUDA both
steps run channels_last under bf16 autocast, as ``train`` does. Target: full / model-only at
least 0.8 on CPU with the ``small`` backbone, at least 0.9 on GPU.

    .venv/bin/python -m bench.training [--device cuda] [--repeats 3] [--compile] [--smoke]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.common import device_from, interleaved_seconds, machine, parser, table
from trainables.config import TrainConfig
from trainables.data import get_dataset
from trainables.loss import simsiam_loss_terms
from trainables.model import SimSiam
from trainables.pipeline import TwoViewTransform, normalize, view_batches
from trainables.recipes import recipe
from trainables.train import Runtime, build_optimizer, train_epoch

VIEWS = {"views.family": "overlap", "views.params": {"overlap": 0.5}}


@dataclass(frozen=True)
class Setting:
    name: str
    recipe: str
    overrides: dict[str, Any]
    dataset: str
    steps: int  # training steps per timed pass


SETTINGS = [
    # `study demo`'s trials: the digits recipe (small CNN, narrow heads), 16 px views, batch 32.
    Setting("demo", "digits", {"views.size": 16, "batch_size": 32}, "digits", 24),
    # The small CNN at 32 px, batch 256, views cut from the 64 px digit scenes.
    Setting("small 32 px", "digits", {"views.size": 32, "batch_size": 256}, "digit-scenes", 4),
    # The CIFAR recipe's ResNet-18 (3x3 stride-1 stem) at 32 px: about 25 img/s on 2 CPU cores.
    Setting("cifar recipe", "cifar", {"views.size": 32, "batch_size": 64}, "digits", 2),
]
SMOKE_SETTINGS = [
    Setting("demo", "digits", {"views.size": 16, "batch_size": 8}, "digits", 2),
    Setting("small 32 px", "digits", {"views.size": 32, "batch_size": 8}, "digit-scenes", 2),
]


def configure(setting: Setting, device: torch.device) -> TrainConfig:
    return recipe(setting.recipe, **{**VIEWS, **setting.overrides, "device": device.type})


def full_pass(
    net,
    optimizer,
    dataset,
    indices: torch.Tensor,
    transform: TwoViewTransform,
    config: TrainConfig,
    runtime: Runtime,
) -> None:
    """``steps`` training steps of the real code, views included (as ``train`` runs an epoch)."""
    batches = view_batches(
        dataset,
        indices,
        transform,
        config.batch_size,
        torch.Generator().manual_seed(1),
        seed=1,
        epoch=0,
    )
    train_epoch(net, optimizer, batches, config, runtime)


def prepared_views(
    dataset,
    indices: torch.Tensor,
    transform: TwoViewTransform,
    config: TrainConfig,
    runtime: Runtime,
):
    """The views of a full pass, normalised on the device, and each pair's margin."""
    prepared = []
    for batch in view_batches(
        dataset,
        indices,
        transform,
        config.batch_size,
        torch.Generator().manual_seed(1),
        seed=1,
        epoch=0,
    ):
        margin = config.margin.margin(batch.geometry.phi.to(runtime.device, torch.float32))
        view1 = normalize(batch.view1, runtime.device, channels_last=runtime.cuda)
        view2 = normalize(batch.view2, runtime.device, channels_last=runtime.cuda)
        prepared.append((view1, view2, margin))
    return prepared


def model_pass(net, optimizer, prepared, runtime: Runtime) -> None:
    """The step of ``train_epoch`` on prepared views: forward, loss, backward, SGD step."""
    net.train()
    for view1, view2, margin in prepared:
        with runtime.autocast():
            output = net(view1, view2)
        terms = simsiam_loss_terms(
            output.p1.float(), output.p2.float(), output.z1.float(), output.z2.float(), margin
        )
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile(model) on the model-only step",
    )
    args = arguments.parse_args()
    device = device_from(args.device)
    runtime = Runtime.detect(device.type)
    compile_model = args.compile and not args.smoke
    notes, rows = [], []
    for setting in SMOKE_SETTINGS if args.smoke else SETTINGS:
        config = configure(setting, device)
        torch.manual_seed(config.seed)
        model = SimSiam(config.model).to(device)
        if runtime.cuda:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, config)
        dataset = get_dataset(setting.dataset, split="train")
        images = setting.steps * config.batch_size
        indices = torch.randint(len(dataset), (images,), generator=torch.Generator().manual_seed(0))
        transform = TwoViewTransform(config.views.build(), config.photometric)
        prepared = prepared_views(dataset, indices, transform, config, runtime)
        candidates = {
            "full": lambda: full_pass(
                model, optimizer, dataset, indices, transform, config, runtime
            ),
            "model": lambda: model_pass(model, optimizer, prepared, runtime),
        }
        compiled_rate = "-"
        if compile_model:
            compiled = torch.compile(model)
            started = time.perf_counter()
            try:
                model_pass(compiled, optimizer, prepared[:1], runtime)
            except Exception as error:  # inductor needs a working C++ (or Triton) toolchain
                notes.append(
                    f"{setting.name}: torch.compile failed "
                    f"({type(error).__name__}: {str(error)[:200]})"
                )
            else:
                notes.append(
                    f"{setting.name}: torch.compile's first step took "
                    f"{time.perf_counter() - started:.0f} s (compilation)"
                )
                candidates["compiled"] = lambda: model_pass(compiled, optimizer, prepared, runtime)
        seconds = interleaved_seconds(candidates, device, repeats=1 if args.smoke else args.repeats)
        full_rate, model_rate = images / seconds["full"], images / seconds["model"]
        if "compiled" in seconds:
            compiled_rate = f"{images / seconds['compiled']:,.1f}"
        rows.append(
            [
                setting.name,
                config.model.backbone,
                f"{config.views.size} px",
                str(config.batch_size),
                f"{full_rate:,.1f}",
                f"{model_rate:,.1f}",
                f"{full_rate / model_rate:.2f}",
                compiled_rate,
            ]
        )
    precision = "channels_last, bf16 autocast" if runtime.cuda else "float32"
    print(
        f"training throughput on {machine(device)}, {precision}, "
        "overlap views (overlap 0.5), data in memory"
    )
    if not compile_model:
        notes.append(
            "torch.compile not timed "
            "(pass --compile: on 2 CPU cores it compiles for 0.5 to 2 min per setting)"
        )
    for note in notes:
        print(note)
    print(
        table(
            [
                "setting",
                "backbone",
                "views",
                "batch",
                "full step (img/s)",
                "model-only step (img/s)",
                "ratio full / model-only (target >= 0.8 CPU, 0.9 GPU)",
                "model-only, torch.compile (img/s)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()

"""The untrained-encoder and raw-pixel kNN baselines, against references computed here."""

import math

import pytest
import torch

from trainables.baselines import (
    PIXELS,
    UNTRAINED,
    Baselines,
    BaselineScore,
    PixelBankTooLarge,
    describe,
    pixel_knn,
    sweep_baselines,
    untrained_knn,
)
from trainables.data.in_memory import TensorImageDataset
from trainables.model import SimSiam
from trainables.pipeline import MEAN, STD
from trainables.recipes import recipe
from trainables.train import KnnEvaluator, Runtime

CLASSES = 10  # the eval dataset is named digits (10 classes); its images come from the loader below


def synthetic(bank=40, queries=16, height=8, width=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    splits = {
        "train": TensorImageDataset(
            torch.randint(0, 256, (bank, 3, height, width), dtype=torch.uint8, generator=generator),
            torch.randint(0, CLASSES, (bank,), generator=generator),
        ),
        "test": TensorImageDataset(
            torch.randint(
                0, 256, (queries, 3, height, width), dtype=torch.uint8, generator=generator
            ),
            torch.randint(0, CLASSES, (queries,), generator=generator),
        ),
    }
    return splits, lambda name, root, split: splits[split]


def config(**overrides):
    return recipe("digits", **{"views.size": 8, "device": "cpu", **overrides})


def reference_pixels(dataset, count):
    """Normalised pixels, one image at a time, flattened."""
    rows = []
    for index in range(count):
        image = dataset.images[index].double() / 255
        rows.append(
            torch.cat(
                [(image[channel] - MEAN[channel]) / STD[channel] for channel in range(3)]
            ).flatten()
        )
    return torch.stack(rows)


def reference_top1(splits, k, temperature, limit=None):
    """Brute force: every cosine similarity, the k largest vote exp(sim / T) for their label."""
    bank_set, query_set = splits["train"], splits["test"]
    bank_count = len(bank_set) if limit is None else min(limit, len(bank_set))
    query_count = len(query_set) if limit is None else min(limit, len(query_set))
    bank, queries = reference_pixels(bank_set, bank_count), reference_pixels(query_set, query_count)
    right = 0
    for query, label in zip(queries, query_set.labels[:query_count].tolist()):
        similarities = [float(query @ entry / (query.norm() * entry.norm())) for entry in bank]
        nearest = sorted(range(len(bank)), key=lambda i: -similarities[i])[:k]
        votes = [0.0] * CLASSES
        for i in nearest:
            votes[int(bank_set.labels[i])] += math.exp(similarities[i] / temperature)
        right += max(range(CLASSES), key=votes.__getitem__) == label
    return right / query_count


@pytest.mark.parametrize(
    ("k", "temperature", "limit"), [(1, 0.1, None), (5, 0.1, None), (100, 0.5, None), (3, 0.07, 12)]
)
def test_pixel_knn_equals_a_brute_force_reference(k, temperature, limit):
    splits, load = synthetic()
    metrics = pixel_knn(
        config(**{"knn.k": k, "knn.temperature": temperature, "data.eval_limit": limit}), load
    )
    assert metrics["knn_top1"] == pytest.approx(reference_top1(splits, k, temperature, limit))
    assert 0 <= metrics["knn_top1"] <= metrics["knn_top5"] <= 1


def test_pixel_knn_depends_on_k():
    splits, _ = synthetic(bank=40, queries=40)
    same = {"train": splits["train"], "test": splits["train"]}  # each query is in the bank
    load = lambda name, root, split: same[split]  # noqa: E731
    flat = {"knn.temperature": 10.0}  # votes nearly equal: the majority label of the k nearest wins
    nearest = pixel_knn(config(**{"knn.k": 1, **flat}), load)["knn_top1"]
    everyone = pixel_knn(config(**{"knn.k": 40, **flat}), load)["knn_top1"]
    assert nearest == 1.0, "its own copy is each query's nearest neighbour"
    assert everyone < 0.5, "all 40 vote: mostly the majority label"
    assert everyone == pytest.approx(reference_top1(same, 40, 10.0))


def test_pixel_knn_views_the_centre_square_at_the_eval_size():
    wide, load_wide = synthetic(height=8, width=12)
    centre = {
        split: TensorImageDataset(data.images[:, :, :, 2:10].contiguous(), data.labels)
        for split, data in wide.items()
    }
    cropped = pixel_knn(config(**{"knn.k": 3}), load_wide)
    assert cropped["knn_top1"] == pytest.approx(reference_top1(centre, 3, 0.1))


def test_a_pixel_bank_too_large_is_refused_before_it_is_read(monkeypatch):
    import trainables.baselines as baselines

    monkeypatch.setattr(baselines, "PIXEL_BANK_LIMIT_BYTES", 100)
    with pytest.raises(PixelBankTooLarge, match="data.eval_limit"):
        pixel_knn(config(), synthetic()[1])
    assert [score.baseline for score in sweep_baselines(config(), [0], synthetic()[1]).scores] == [
        UNTRAINED
    ]


def test_untrained_knn_is_the_encoder_train_starts_from():
    digits = recipe("digits", **{"data.eval_limit": 200, "device": "cpu"})
    first, again, other = (
        untrained_knn(digits),
        untrained_knn(digits),
        untrained_knn(digits.replace(seed=1)),
    )
    assert first == again, "deterministic per seed"
    assert first != other, "another seed, another encoder"
    torch.manual_seed(digits.seed)
    model = SimSiam(digits.model)
    assert KnnEvaluator(digits)(model, Runtime.detect("cpu")) == first


def test_untrained_knn_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    untrained_knn(config(), synthetic()[1])
    assert torch.equal(torch.rand(3), expected)


def test_sweep_baselines_has_each_seed_once_and_pixels_once():
    splits, load = synthetic()
    base = config(**{"knn.k": 5})
    baselines = sweep_baselines(base, [2, 0, 2], load)
    assert list(baselines.untrained) == [0, 2]
    assert baselines.untrained[2] == untrained_knn(base.replace(seed=2), load)["knn_top1"]
    (pixels,) = baselines.of_kind(PIXELS)
    assert pixels.seed is None and pixels.knn_top1 == pytest.approx(reference_top1(splits, 5, 0.1))
    assert (pixels.eval_dataset, pixels.k, pixels.size, pixels.eval_limit) == ("digits", 5, 8, None)
    assert Baselines.from_rows(baselines.rows()) == baselines


def score(baseline, seed, top1):
    return BaselineScore(baseline, seed, top1, None, "digits", 200, 16, None)


def test_describe_states_both_baselines_and_the_best_trials_margins():
    baselines = Baselines(
        (
            score(UNTRAINED, 0, 0.40),
            score(UNTRAINED, 1, 0.41),
            score(UNTRAINED, 2, 0.42),
            score(PIXELS, None, 0.378),
        )
    )
    assert describe(baselines, 0.561, seed=1) == (
        "untrained encoder 0.410 (seeds 0,1,2: 0.400/0.410/0.420), raw pixels 0.378; "
        "best 0.561 = untrained +0.151 (seed 1; mean +0.151), pixels +0.183"
    )
    assert describe(baselines, 0.5, seed=0).endswith(
        "untrained +0.100 (seed 0; mean +0.090), pixels +0.122"
    )
    assert describe(Baselines()) == "no baselines recorded"
    assert (
        describe(Baselines((score(PIXELS, None, 0.3),)), 0.25)
        == "raw pixels 0.300; best 0.250 = pixels -0.050"
    )

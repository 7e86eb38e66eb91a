import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.transforms.v2 import functional as TF

from trainables import photometric as P
from trainables.photometric import PhotometricConfig, augment, augment_batch
from trainables.pipeline import TwoViewTransform
from trainables.validation import ConfigError
from trainables.views import make_views


def images(count=6, side=24, seed=0):
    return torch.randint(
        0,
        256,
        (count, 3, side, side),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(seed),
    )


def test_flip_is_recorded_and_never_changes_the_geometry():
    sampler = make_views("overlap", overlap=0.4, size=16)
    flip_only = PhotometricConfig(jitter_p=0.0, grayscale_p=0.0, flip_p=0.5)
    batch = TwoViewTransform(sampler, flip_only).batch(images(32), torch.Generator().manual_seed(1))
    plain1, plain2, geometry = sampler.batch(images(32), torch.Generator().manual_seed(1))
    assert torch.equal(batch.geometry.boxes, geometry.boxes)
    assert batch.flipped.any() and not batch.flipped.all()
    for views, plain, column in ((batch.view1, plain1, 0), (batch.view2, plain2, 1)):
        for view, original, flipped in zip(views, plain, batch.flipped[:, column]):
            assert torch.equal(view, TF.horizontal_flip(original) if flipped else original)


def test_photometric_leaves_geometry_of_every_view_family_alone():
    for family in ("random_crop", "patch", "cutout", "exclusive"):
        sampler = make_views(family, size=16)
        augmented = TwoViewTransform(sampler, PhotometricConfig(blur_p=0.5)).batch(
            images(), torch.Generator().manual_seed(2)
        )
        _, _, geometry = sampler.batch(images(), torch.Generator().manual_seed(2))
        assert torch.equal(augmented.geometry.boxes, geometry.boxes)


def test_grayscale_makes_channels_equal():
    view, flipped = augment(
        images(1)[0], PhotometricConfig(jitter_p=0.0, grayscale_p=1.0, flip_p=0.0)
    )
    assert not flipped
    assert torch.equal(view[0], view[1]) and torch.equal(view[1], view[2])


def test_jitter_changes_pixels_deterministically_per_seed():
    config = PhotometricConfig(jitter_p=1.0, grayscale_p=0.0, flip_p=0.0)
    source = images()
    first, _ = augment_batch(source, config, torch.Generator().manual_seed(3))
    again, _ = augment_batch(source, config, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.equal(first, source)
    assert first.dtype == torch.uint8


def test_each_view_is_augmented_independently():
    config = PhotometricConfig(jitter_p=1.0, grayscale_p=0.0, flip_p=0.0)
    same = images(1).expand(2, -1, -1, -1)
    augmented, _ = augment_batch(same, config, torch.Generator().manual_seed(4))
    assert not torch.equal(augmented[0], augmented[1])


def test_none_is_the_identity():
    source = images()
    augmented, flips = augment_batch(
        source, PhotometricConfig.none(), torch.Generator().manual_seed(0)
    )
    assert torch.equal(augmented, source) and not flips.any()


@pytest.mark.parametrize(
    ("field", "value"), [("jitter_p", 1.5), ("hue", 0.7), ("blur_sigma", (2.0, 1.0))]
)
def test_bad_photometric_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"photometric.{field}"):
        PhotometricConfig(**{field: value})


def float_images(seed, count=4, side=12):
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("ours", "reference", "low", "high"),
    [
        (P.adjust_brightness, TF.adjust_brightness, 0.6, 1.4),
        (P.adjust_contrast, TF.adjust_contrast, 0.6, 1.4),
        (P.adjust_saturation, TF.adjust_saturation, 0.6, 1.4),
        (P.adjust_hue, TF.adjust_hue, -0.1, 0.1),
    ],
)
@given(seed=st.integers(0, 10_000))
def test_batched_operations_match_torchvision_per_image(ours, reference, low, high, seed):
    images = float_images(seed)
    factors = low + (high - low) * torch.rand(4, generator=torch.Generator().manual_seed(seed + 1))
    batched = ours(images, factors)
    for image, factor, result in zip(images, factors, batched):
        assert torch.allclose(result, reference(image, float(factor)), atol=1e-5)


def test_grayscale_and_blur_match_torchvision():
    images = float_images(0, side=20)
    assert torch.allclose(P.grayscale(images), TF.rgb_to_grayscale(images), atol=1e-6)
    sigmas = torch.tensor([0.3, 0.8, 1.5, 2.0])
    blurred = P.gaussian_blur(images, sigmas, 5)
    for image, sigma, result in zip(images, sigmas, blurred):
        assert torch.allclose(
            result, TF.gaussian_blur(image, [5, 5], [float(sigma)] * 2), atol=1e-5
        )


def test_hsv_round_trip_is_lossless():
    images = float_images(3)
    assert torch.allclose(P.hsv_to_rgb(P.rgb_to_hsv(images)), images, atol=1e-5)


def test_single_view_equals_batch_of_one():
    view = images(1)[0]
    config = PhotometricConfig(blur_p=0.5)
    single, flipped = augment(view, config, torch.Generator().manual_seed(9))
    batch, flips = augment_batch(view[None], config, torch.Generator().manual_seed(9))
    assert torch.equal(single, batch[0]) and flipped == bool(flips[0])


@given(seed=st.integers(0, 10_000))
def test_color_jitter_applies_each_image_its_own_factors_in_its_own_order(seed):
    """The batched jitter equals torchvision's adjustments applied image by image, with the
    factors and the random order drawn from the same generator."""
    batch = float_images(seed, count=5, side=12)
    config = PhotometricConfig()
    jittered = P.color_jitter(batch, config, torch.Generator().manual_seed(seed))
    draws = torch.Generator().manual_seed(seed)
    ranges = [(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)]
    factors = torch.stack(
        [low + (high - low) * torch.rand(5, generator=draws) for low, high in ranges], dim=1
    )
    order = torch.rand(5, 4, generator=draws).argsort(dim=1)
    reference_operations = (
        TF.adjust_brightness,
        TF.adjust_contrast,
        TF.adjust_saturation,
        TF.adjust_hue,
    )
    for image, image_factors, image_order, result in zip(batch, factors, order, jittered):
        for index in image_order.tolist():
            image = reference_operations[index](image, float(image_factors[index]))
        assert torch.allclose(result, image, atol=1e-5)

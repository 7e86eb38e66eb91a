"""Benchmark 7: the realised geometry of every view family at every grid point.

For each family's grid (the paper's figures, ``search_spaces``) and both ``random_crop``
distributions (torchvision's exact one, the default, and the bundled recipes' area first),
samples view pairs on a square image and a 480x640 scene and prints the median and 5-95% range
of what each family actually varies: the cropped views' area (over the image area), their aspect
ratio (width over height) and the centre distance phi (over the image diagonal). For ``patch``
and ``cutout`` view 1 is the whole image, so only view 2 (the patch or the hole's region) is
measured; the other families pool both views. The overlap grid is measured again with decoupled
crops (aspect ratio in [3/4, 4/3]; then at the fixed-area figure's crops of half the image); a
setting the image shape cannot hold is printed as refused, with its feasible range.

    .venv/bin/python -m bench.view_distributions [--pairs 4000] [--smoke]
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from bench.common import parser, table
from search_spaces import get_space
from search_spaces.common import FAMILY, Point
from search_spaces.presets import FIXED_AREA_OVERLAPS, FIXED_CROP_AREA
from trainables.recipes import recipe
from trainables.validation import ConfigError
from trainables.views import ViewGeometry, make_views
from trainables.views.boxes import box_height, box_width
from trainables.views.families import RATIO

PARAMS_PREFIX = "views.params."
WHOLE_FIRST_VIEW = ("patch", "cutout")
SPACES = ("overlap", "patch", "exclusive", "cutout")
IMAGE_SIZES = ((96, 96), (480, 640))
VIEW_SIZE = 32
BASE = recipe("cifar", **{"views.size": VIEW_SIZE})
"""The configuration the grids are built on: the CIFAR recipe at 32 px views."""


def points() -> Iterator[tuple[str, dict]]:
    """Both random-crop distributions, every grid point, and the overlap grid again with the
    crops decoupled: aspect ratio in [3/4, 4/3], and the fixed-area figure's crops of 0.5."""
    yield "random_crop", {"distribution": "area_first"}
    yield "random_crop", {"distribution": "torchvision"}
    for space in SPACES:
        for point in get_space(space).grid(BASE):
            yield point[FAMILY], parameters(point)
    for point in get_space("overlap").grid(BASE):
        yield "overlap", {**parameters(point), "crop_ratio": [round(value, 3) for value in RATIO]}
    for overlap in FIXED_AREA_OVERLAPS:
        yield "overlap", {"overlap": overlap, "crop_area": [FIXED_CROP_AREA, FIXED_CROP_AREA]}


def parameters(point: Point) -> dict:
    return {
        key.removeprefix(PARAMS_PREFIX): value
        for key, value in point.items()
        if key.startswith(PARAMS_PREFIX)
    }


def cropped_views(geometry: ViewGeometry, family: str) -> Tensor:
    """``(M, 4)`` boxes of the views the family crops."""
    return geometry.boxes[:, 1] if family in WHOLE_FIRST_VIEW else geometry.boxes.flatten(0, 1)


def spread(values: Tensor) -> str:
    low, median, high = torch.quantile(
        values.double(), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    ).tolist()
    return f"{median:.3f} [{low:.3f}, {high:.3f}]"


def describe(
    family: str, params: dict, height: int, width: int, pairs: int
) -> tuple[str, str, str]:
    sampler = make_views(family, size=VIEW_SIZE, **params)
    try:
        sampler.check_image(height, width)
    except ConfigError as error:
        return f"refused: {error.valid}", "", ""
    geometry = sampler.sample(pairs, height, width, torch.Generator().manual_seed(0))
    boxes = cropped_views(geometry, family)
    area = box_width(boxes) * box_height(boxes) / (height * width)
    return spread(area), spread(box_width(boxes) / box_height(boxes)), spread(geometry.phi)


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--pairs", type=int, default=4000)
    options = arguments.parse_args()
    pairs = 200 if options.smoke else options.pairs
    print(f"# Realised view geometry: median [5%, 95%] over {pairs} pairs per row, seed 0\n")
    for height, width in IMAGE_SIZES:
        rows = [
            (
                family,
                ", ".join(f"{key}={value}" for key, value in params.items()) or "defaults",
                *describe(family, params, height, width, pairs),
            )
            for family, params in points()
        ]
        print(f"## {height}x{width} images\n")
        print(
            table(
                ("family", "parameters", "crop area", "crop aspect (w/h)", "centre distance phi"),
                rows,
            )
        )
        print()


if __name__ == "__main__":
    main()

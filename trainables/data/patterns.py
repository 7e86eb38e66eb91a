"""Patterned objects, drawn procedurally: the maths of the bundled SSL benchmark.

An object is a silhouette (ellipse, rectangle or diamond) filled with a two-colour periodic
motif. The motif is the class; everything else is a nuisance drawn at random per object:
silhouette, aspect, size, position, a small rotation, the motif's wavelength and phase, both of
its colours, the background (a smooth field of random colours) and pixel noise. Each nuisance
is one that SimSiam's augmentations vary between the two views (colour jitter and grayscale,
random resized crops, flips), so an encoder that learns the invariances they teach separates
the classes, while raw pixels and a random encoder see mostly colour and position.

Sampling (:func:`sample_objects`, numpy, seeded) is kept apart from rendering
(:func:`render_objects`, pure tensor maths, anti-aliased by supersampling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Motif = Callable[[Tensor, Tensor, "MotifPhase"], Tensor]
SILHOUETTES = ("ellipse", "rectangle", "diamond")
SUPERSAMPLING = 2


@dataclass(frozen=True)
class MotifPhase:
    """Per-object motif parameters, broadcast over pixels: wavelength in pixels, two phases in
    radians and a sign (which diagonal a diagonal motif runs along)."""

    wavelength: Tensor
    phase: Tensor
    phase2: Tensor
    sign: Tensor

    @property
    def frequency(self) -> Tensor:
        return 2 * math.pi / self.wavelength

    def __getitem__(self, rows) -> MotifPhase:
        return MotifPhase(*(getattr(self, f.name)[rows] for f in fields(self)))


def _stripes(along: Tensor, motif: MotifPhase) -> Tensor:
    return torch.sin(motif.frequency * along + motif.phase) > 0


MOTIFS: dict[str, Motif] = {
    "horizontal": lambda u, v, m: _stripes(v, m),
    "vertical": lambda u, v, m: _stripes(u, m),
    "diagonal": lambda u, v, m: _stripes((u + m.sign * v) / math.sqrt(2), m),
    "checker": lambda u, v, m: (
        torch.sin(m.frequency * u + m.phase) * torch.sin(m.frequency * v + m.phase2) > 0
    ),
    "dots": lambda u, v, m: (
        torch.cos(m.frequency * u + m.phase) + torch.cos(m.frequency * v + m.phase2) > 1
    ),
    "rings": lambda u, v, m: _stripes(torch.sqrt(u * u + v * v), m),
    "grid": lambda u, v, m: (
        (torch.cos(m.frequency * u + m.phase) > 0.6) | (torch.cos(m.frequency * v + m.phase2) > 0.6)
    ),
    "chevron": lambda u, v, m: _stripes(v + u.abs(), m),
    "spokes": lambda u, v, m: torch.sin(7 * torch.atan2(v, u) + m.phase) > 0,
    "plain": lambda u, v, m: torch.zeros_like(u, dtype=torch.bool),
}
"""The classes: each maps object-frame pixel offsets ``(u, v)`` to where the second colour is.
Every motif is mirror-symmetric up to its random phase and sign, so horizontal flips keep the
class."""
CLASSES = tuple(MOTIFS)


@dataclass(frozen=True)
class ObjectSpec:
    """The nuisance ranges of one object, in units of its canvas side (or of the object).

    ``half_side``: half the object's mean side over the canvas side; ``log_aspect``: half-range
    of ln(width / height); ``wavelength``: motif period over the object's half side;
    ``value_gap``: HSV value difference of the motif's two colours.
    """

    half_side: tuple[float, float] = (0.35, 0.5)
    log_aspect: float = 0.25
    rotation_degrees: float = 10.0
    wavelength: tuple[float, float] = (0.3, 0.45)
    value_gap: tuple[float, float] = (0.35, 0.45)
    saturation: tuple[float, float] = (0.2, 1.0)


@dataclass(frozen=True)
class ObjectDraw:
    """``count`` objects: class, silhouette, centre and half extents in canvas pixels, rotation
    (radians), motif and the two colours (``[count, 3]`` RGB in [0, 1])."""

    label: Tensor
    silhouette: Tensor
    centre_x: Tensor
    centre_y: Tensor
    half_width: Tensor
    half_height: Tensor
    angle: Tensor
    motif: MotifPhase
    colour: Tensor
    motif_colour: Tensor

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, rows) -> ObjectDraw:
        return ObjectDraw(*(getattr(self, f.name)[rows] for f in fields(self)))


def hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """``[..., 3]`` RGB of HSV components in [0, 1] (hue wraps)."""
    sector = hue * 6
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=hue.dtype)
    k = (sector.unsqueeze(-1) + offsets) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value.unsqueeze(-1) * (1 - saturation.unsqueeze(-1) * ramp)


def _tensor(values: np.ndarray) -> Tensor:
    """float32: the draw is made in float64 numpy, the rendering in float32."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def sample_objects(
    rng: np.random.Generator,
    labels: np.ndarray,
    canvas: int,
    spec: ObjectSpec,
    half_side: np.ndarray | None = None,
) -> ObjectDraw:
    """Draw the nuisances of one object per label. An object whose larger half extent fits the
    canvas lies wholly inside it; a larger one is centred, and the canvas clips it (objects
    fill the frame, as in object-centric photos). ``half_side`` (pixels) overrides the spec's
    size range (scenes pick their own sizes)."""
    count = len(labels)
    if half_side is None:
        half_side = rng.uniform(*spec.half_side, count) * canvas
    aspect = np.exp(rng.uniform(-spec.log_aspect, spec.log_aspect, count))
    half_width, half_height = half_side * aspect, half_side / aspect
    slack = np.maximum(canvas - 2 * np.maximum(half_width, half_height), 0)
    centre_x = canvas / 2 + (rng.uniform(0, 1, count) - 0.5) * slack
    centre_y = canvas / 2 + (rng.uniform(0, 1, count) - 0.5) * slack
    motif = MotifPhase(
        wavelength=_tensor(rng.uniform(*spec.wavelength, count) * half_side),
        phase=_tensor(rng.uniform(0, 2 * math.pi, count)),
        phase2=_tensor(rng.uniform(0, 2 * math.pi, count)),
        sign=_tensor(rng.choice([-1.0, 1.0], count)),
    )
    hue = _tensor(rng.uniform(0, 1, (2, count)))
    saturation = _tensor(rng.uniform(*spec.saturation, (2, count)))
    low = rng.uniform(0.05, 0.5, count)
    high = low + rng.uniform(*spec.value_gap, count)
    swap = rng.uniform(0, 1, count) < 0.5
    value = _tensor(np.where(swap, [high, low], [low, high]))
    colours = hsv_to_rgb(hue, saturation, value)
    return ObjectDraw(
        label=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        silhouette=torch.from_numpy(rng.integers(0, len(SILHOUETTES), count)),
        centre_x=_tensor(centre_x),
        centre_y=_tensor(centre_y),
        half_width=_tensor(half_width),
        half_height=_tensor(half_height),
        angle=_tensor(
            np.radians(rng.uniform(-spec.rotation_degrees, spec.rotation_degrees, count))
        ),
        motif=motif,
        colour=colours[0],
        motif_colour=colours[1],
    )


def colour_field(rng: np.random.Generator, count: int, canvas: int, cells: int) -> Tensor:
    """``[count, canvas, canvas, 3]`` backgrounds: a ``cells x cells`` grid of random colours,
    upsampled bicubically, so that two crops of one background rarely share a colour."""
    hue, saturation, value = (
        _tensor(rng.uniform(low, 1, (count, cells, cells))) for low in (0.0, 0.2, 0.05)
    )
    coarse = hsv_to_rgb(hue, saturation, value * 0.95).permute(0, 3, 1, 2)
    return (
        F.interpolate(coarse, size=(canvas, canvas), mode="bicubic", align_corners=False)
        .clamp(0, 1)
        .permute(0, 2, 3, 1)
    )


def _object_frame(draw: ObjectDraw, canvas: int) -> tuple[Tensor, Tensor]:
    """Supersampled pixel centres as offsets ``(u, v)`` in each object's rotated frame, in pixels
    (``v`` up), ``[count, (canvas * SUPERSAMPLING) ** 2]``."""
    ticks = (torch.arange(canvas * SUPERSAMPLING, dtype=draw.centre_x.dtype) + 0.5) / SUPERSAMPLING
    y, x = (grid.reshape(1, -1) for grid in torch.meshgrid(ticks, ticks, indexing="ij"))
    dx, dy = x - draw.centre_x[:, None], y - draw.centre_y[:, None]
    cos, sin = torch.cos(draw.angle)[:, None], torch.sin(draw.angle)[:, None]
    return cos * dx + sin * dy, sin * dx - cos * dy


def _inside(draw: ObjectDraw, u: Tensor, v: Tensor) -> Tensor:
    nu, nv = u / draw.half_width[:, None], v / draw.half_height[:, None]
    shapes = torch.stack(
        (nu * nu + nv * nv < 1, torch.maximum(nu.abs(), nv.abs()) < 0.9, nu.abs() + nv.abs() < 1.2)
    )
    return shapes.gather(0, draw.silhouette.view(1, -1, 1).expand(1, *u.shape)).squeeze(0)


def _motif(draw: ObjectDraw, u: Tensor, v: Tensor, inside: Tensor) -> Tensor:
    """Where the motif's second colour is, evaluated at the pixels inside an object only."""
    second = torch.zeros_like(inside)
    objects, pixels = inside.nonzero(as_tuple=True)
    labels = draw.label[objects]
    for label, name in enumerate(CLASSES):
        rows = labels == label
        obj, pix = objects[rows], pixels[rows]
        second[obj, pix] = MOTIFS[name](u[obj, pix], v[obj, pix], draw.motif[obj])
    return second


def _coverage(mask: Tensor, canvas: int) -> Tensor:
    """Supersampled booleans to ``[count, canvas, canvas, 1]`` area fractions."""
    fine = mask.float().view(-1, canvas, SUPERSAMPLING, canvas, SUPERSAMPLING)
    return fine.mean(dim=(2, 4)).unsqueeze(-1)


def render_objects(canvases: Tensor, draw: ObjectDraw, present: Tensor | None = None) -> Tensor:
    """Paint one object on each of ``canvases`` (``[count, H, H, 3]`` float RGB in [0, 1]),
    where ``present`` (bool ``[count]``, default all) says so; returns new canvases."""
    canvas = canvases.shape[1]
    u, v = _object_frame(draw, canvas)
    inside = _inside(draw, u, v)
    if present is not None:
        inside &= present[:, None]
    body = _coverage(inside, canvas)
    second = _coverage(_motif(draw, u, v, inside), canvas)
    return (
        canvases * (1 - body)
        + draw.colour[:, None, None] * (body - second)
        + draw.motif_colour[:, None, None] * second
    )


def to_uint8(images: Tensor, rng: np.random.Generator, noise: float) -> Tensor:
    """``[N, H, W, 3]`` floats plus Gaussian pixel noise to ``uint8 [N, 3, H, W]``."""
    noisy = images + _tensor(rng.normal(0, noise, images.shape))
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous()

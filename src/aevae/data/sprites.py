"""Sprites: binary 32x32 images of one shape each, rendered from known factors of variation.

The factors are those of dSprites (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset):
shape (square, ellipse, heart), scale, orientation and x and y position, each on a grid of
values; the data set holds every combination once, in factor-major order (shape slowest, y
fastest). This is a smaller grid than dSprites' 3 x 6 x 40 x 32 x 32 images at 64x64 (see
docs/sprites.md): 3 x 6 x 8 x 16 x 16 = 36,864 images at 32x32.

Rendering is a deterministic function of the factors (a pixel is on when its centre lies inside
the rotated, scaled shape), so the images are the same on every run; the split seed alone decides
which images go to train, val and test.
"""

import math
from typing import NamedTuple

import torch
from torch import Tensor

MAX_LEVEL = 1  # binary images
IMAGE_SIZE = 32
SPRITE_SIZE = 11.2  # the side of the square at scale 1, in pixels
POSITION_RANGE = (8.0, 24.0)  # sprite centres span these pixel coordinates (x and y alike)
ELLIPSE_AXES = (0.6, 0.3)  # semi-axes, as fractions of the sprite size
HEART_WIDTH = 1.15  # the heart curve's half-width, scaled to half the sprite size
CHUNK = 512  # images rendered per tensor operation (small enough to stay in the CPU's caches)


def _square(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= 0.5) & (v.abs() <= 0.5)


def _ellipse(u: Tensor, v: Tensor) -> Tensor:
    a, b = ELLIPSE_AXES
    return (u / a).square() + (v / b).square() <= 1.0


def _heart(u: Tensor, v: Tensor) -> Tensor:
    """The heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, about centred on its bounding box."""
    x, y = u * 2 * HEART_WIDTH, v * 2 * HEART_WIDTH + 0.1
    return (x.square() + y.square() - 1).pow(3) - x.square() * y.pow(3) <= 0.0


# whether points (u, v), in units of the sprite size around its centre (v up), lie inside the shape
SHAPES = {"square": _square, "ellipse": _ellipse, "heart": _heart}


class Factor(NamedTuple):
    """One factor of variation: its name and the values it takes (its index is the class)."""

    name: str
    values: tuple[float, ...]


def _grid(low: float, high: float, n: int, *, endpoint: bool = True) -> tuple[float, ...]:
    step = (high - low) / (n - 1 if endpoint else n)
    return tuple(low + i * step for i in range(n))


FACTORS = (
    Factor("shape", tuple(float(i) for i in range(len(SHAPES)))),  # 0 square, 1 ellipse, 2 heart (SHAPES)
    Factor("scale", _grid(0.5, 1.0, 6)),
    Factor("orientation", _grid(0.0, 2 * math.pi, 8, endpoint=False)),  # radians, counter-clockwise
    Factor("x", _grid(0.0, 1.0, 16)),  # 0: left, 1: right
    Factor("y", _grid(0.0, 1.0, 16)),  # 0: top, 1: bottom
)
FACTOR_NAMES = tuple(factor.name for factor in FACTORS)


def factor_grid(factors: tuple[Factor, ...] = FACTORS) -> Tensor:
    """Every combination of factor indices once, the first factor slowest: (N, K) int64."""
    axes = [torch.arange(len(factor.values)) for factor in factors]
    return torch.cartesian_prod(*axes).reshape(-1, len(factors))


def factor_values(indices: Tensor, factors: tuple[Factor, ...] = FACTORS) -> Tensor:
    """The values (N, K) float64 of factor indices (N, K)."""
    columns = [torch.tensor(factor.values, dtype=torch.float64)[indices[:, k]] for k, factor in enumerate(factors)]
    return torch.stack(columns, dim=1)


def render(values: Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """Images (N, 1, size, size) uint8 in {0, 1} of factor values (N, 5) ordered as FACTORS."""
    low, high = (coordinate * size / IMAGE_SIZE for coordinate in POSITION_RANGE)
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    images = []
    for part in values.to(torch.float64).split(CHUNK):
        shape, scale, angle, x, y = (column[:, None, None] for column in part.unbind(1))
        side = scale * SPRITE_SIZE * size / IMAGE_SIZE
        dx = (centres[None, None, :] - (low + x * (high - low))) / side
        dy = -(centres[None, :, None] - (low + y * (high - low))) / side  # image rows run downwards
        cos, sin = angle.cos(), angle.sin()  # rotate the points by -angle: the shape turns by +angle
        u, v = cos * dx + sin * dy, cos * dy - sin * dx
        inside = torch.zeros(u.shape, dtype=torch.uint8)
        for index, test in enumerate(SHAPES.values()):
            rows = shape[:, 0, 0] == index
            inside[rows] = test(u[rows], v[rows]).to(torch.uint8)
        images.append(inside.unsqueeze(1))
    return torch.cat(images)


def load_sprites_raw() -> tuple[Tensor, Tensor, Tensor]:
    """Every combination of FACTORS rendered once: images (N, 1, 32, 32) uint8 in {0, 1}, labels
    (N,) int64 (the shape) and factor indices (N, 5) int64."""
    indices = factor_grid()
    return render(factor_values(indices)), indices[:, 0].clone(), indices

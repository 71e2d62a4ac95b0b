"""How complex an image is, per image: the denominators of the complexity-normalised anomaly
scores (`<model>_error_per_<name>`). An autoencoder's reconstruction error grows with an image's
complexity whatever its class (Serrà et al. 2020 show the same for likelihoods), so a simple
anomaly (a thin 1 beside 8s) scores low; the error per unit of complexity corrects for it."""

from torch import Tensor


def total_variation(images: Tensor) -> Tensor:
    """The anisotropic total variation of each image (N, C, H, W): the sum of the absolute
    differences between vertically and horizontally neighbouring pixels over every channel, in
    the images' units (for strokes on a plain ground: about twice their edges' length); float64 (N,)."""
    images = images.double()
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().sum((1, 2, 3))
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().sum((1, 2, 3))
    return vertical + horizontal

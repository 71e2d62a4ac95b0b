"""Paths through a latent space: interpolations, traversals and a 2-D projection."""

import torch
import torch.nn.functional as F
from torch import Tensor


def interpolate(z_start: Tensor, z_end: Tensor, steps: int) -> Tensor:
    """Linear paths from each row of `z_start` (P, D) to the row of `z_end`: shape (P, steps, D)."""
    alpha = torch.linspace(0.0, 1.0, steps, device=z_start.device, dtype=z_start.dtype)[None, :, None]
    return (1 - alpha) * z_start[:, None] + alpha * z_end[:, None]


def traverse(z: Tensor, dims: Tensor, scale: Tensor, steps: int, span: float) -> Tensor:
    """Vary one dimension of code `z` (D,) at a time by -span..span times its `scale` (D,).

    Returns (len(dims), steps, D): row i moves dimension dims[i], the others stay at `z`.
    """
    offsets = torch.linspace(-span, span, steps, device=z.device, dtype=z.dtype)
    rows = torch.arange(len(dims), device=z.device)
    codes = z.expand(len(dims), steps, len(z)).clone()
    codes[rows, :, dims] += offsets[None, :] * scale[dims, None]
    return codes


def project_2d(z: Tensor, seed: int) -> Tensor:
    """2-D coordinates of codes `z` (N, D): the codes themselves for D <= 2, else their first two
    principal components."""
    if z.shape[1] <= 2:
        return F.pad(z, (0, 2 - z.shape[1]))
    from sklearn.decomposition import PCA

    points = PCA(n_components=2, random_state=seed).fit_transform(z.double().cpu().numpy())
    return torch.from_numpy(points).float()

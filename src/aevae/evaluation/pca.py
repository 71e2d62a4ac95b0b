"""PCA, the linear baseline of every use: fitted on training images, as many components as the
models' latent size; codes for the probe, reconstructions for reconstruction, denoising and
anomaly scores."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # scikit-learn is imported by `fit_pca`
    from sklearn.decomposition import PCA


@dataclass
class PixelPCA:
    """A PCA of flattened images (in float64)."""

    pca: "PCA"
    image_shape: tuple[int, ...]

    def codes(self, images: Tensor) -> np.ndarray:
        """Projections on the principal components, (N, n_components)."""
        return self.pca.transform(_flat(images))

    def reconstruct(self, images: Tensor) -> Tensor:
        """The projection back in pixel space, clipped to [0, 1], as float32 (N, *image_shape)
        on the images' device."""
        recon = self.pca.inverse_transform(self.pca.transform(_flat(images))).clip(0.0, 1.0)
        return torch.from_numpy(recon).float().reshape(-1, *self.image_shape).to(images.device)


def _flat(images: Tensor) -> np.ndarray:
    return images.flatten(1).double().cpu().numpy()


def fit_pca(train_images: Tensor, n_components: int, seed: int) -> PixelPCA:
    """The first `n_components` principal components of `train_images` (N, C, H, W)."""
    from sklearn.decomposition import PCA

    return PixelPCA(PCA(n_components=n_components, random_state=seed).fit(_flat(train_images)), tuple(train_images.shape[1:]))

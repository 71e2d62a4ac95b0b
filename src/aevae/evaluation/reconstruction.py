"""Reconstruction quality of images in [0, 1]: MSE, BCE, PSNR and SSIM (torchmetrics); of
vectors: MSE."""

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure


def reconstruction_metrics(recon: Tensor, target: Tensor, batch_size: int) -> dict[str, float]:
    """Mean over images of reconstructions `recon` against `target`, both (N, C, H, W) in [0, 1].

    mse: per pixel; bce: nats per image (summed over pixels); psnr: dB, the mean of per-image
    values (the squared error averaged over pixels and channels); ssim: the mean of per-image
    values (gaussian window, sigma 1.5; colour: the mean over channels). Data range 1.
    Vectors (N, D): mse per feature only (no range, no pixels).
    """
    if recon.ndim == 2:
        return {"mse": float((recon - target).square().mean())}
    quality = MetricCollection(
        {
            "mse": MeanSquaredError(),
            "psnr": PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    ).to(recon.device)
    bce = MeanMetric().to(recon.device)
    with torch.no_grad():
        for recon_batch, target_batch in zip(recon.split(batch_size), target.split(batch_size)):
            quality.update(recon_batch, target_batch)
            bce.update(F.binary_cross_entropy(recon_batch, target_batch, reduction="none").flatten(1).sum(1))
    return {**{name: float(value) for name, value in quality.compute().items()}, "bce": float(bce.compute())}

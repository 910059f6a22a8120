"""The renderer's losses, all over the synthesized region (``alpha``, the feathered erased mask):
L1, 1 - SSIM, the lip loss of Diffused Heads (L1 weighted on the mouth region), a temporal term
(frame-to-frame differences match the real video's) and least-squares adversarial terms."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .network import ssim
from .presets import LossWeights

SSIM_PAD = 5  # the SSIM map is 10 px smaller than the image (11 px window)


def renderer_losses(
    output: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor,
    mouth: torch.Tensor,
    window: int,
    weights: LossWeights,
    adversarial_score: torch.Tensor | None = None,
    denominator: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """``output``/``target`` (N, 3, H, W) in [0, 1] with N = windows * ``window`` frames in order;
    ``alpha``/``mouth`` (N, H, W); ``adversarial_score`` the discriminator's patches on ``output``
    (None: no adversarial term). Returns each term and their weighted ``total``.

    ``denominator`` turns this batch's normalizers (region sums) into the global batch's when the
    batch is one rank's share (``distributed.mean_over_ranks``); None: this batch's own."""

    def normalizer(value: torch.Tensor) -> torch.Tensor:
        return (value if denominator is None else denominator(value)).clamp_min(1.0)

    region = normalizer(alpha.sum())
    error = (output - target).abs().mean(1)  # (N, H, W)
    losses = {
        "l1": (error * alpha).sum() / region,
        "lip": (error * mouth * alpha).sum() / normalizer((mouth * alpha).sum()),
    }
    inner = alpha[:, SSIM_PAD:-SSIM_PAD, SSIM_PAD:-SSIM_PAD]
    losses["ssim"] = ((1 - ssim(output, target)) * inner).sum() / normalizer(inner.sum())
    seq = output.view(-1, window, *output.shape[1:])
    real = target.view(-1, window, *target.shape[1:])
    diff = ((seq[:, 1:] - seq[:, :-1]) - (real[:, 1:] - real[:, :-1])).abs().mean(2)
    windows = alpha.view(-1, window, *alpha.shape[1:])
    band = torch.maximum(windows[:, 1:], windows[:, :-1])
    losses["temporal"] = (diff * band).sum() / normalizer(band.sum())
    if adversarial_score is not None:
        losses["adversarial"] = ((adversarial_score - 1) ** 2).mean()
    else:
        losses["adversarial"] = torch.zeros((), device=output.device)
    losses["total"] = sum(
        getattr(weights, name) * losses[name] for name in ("l1", "ssim", "lip", "temporal", "adversarial")
    )
    return losses


def discriminator_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: real patches towards 1, generated ones towards 0."""
    return 0.5 * (((real_score - 1) ** 2).mean() + (fake_score**2).mean())

"""The burned-in text classifier network: a compact depthwise-separable CNN.

Input: ``(batch, 4, 256, 256)`` float32 in [0, 1], the channels of
:func:`scrubber.detect.model_input.model_input`. Output: one probability per frame that it carries
burned-in text. About 30 million multiply-adds per frame, so it runs at hundreds of frames per
second on two CPU cores. The head pools both the maximum (text is often a small part of the frame)
and the mean of the last feature map.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TextClassifierNet"]


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TextClassifierNet(nn.Module):
    """Frame-level burned-in text classifier.

    Parameters
    ----------
    in_channels : int, optional
        Number of input channels (see ``scrubber.detect.model_input.CHANNELS``).
    width : int, optional
        Channel count of the stem; later stages scale from it.
    """

    def __init__(self, in_channels: int = 4, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(in_channels, w, 2),  # 128
            _separable(w, 2 * w, 2),  # 64
            _separable(2 * w, 2 * w, 1),
            _separable(2 * w, 4 * w, 2),  # 32
            _separable(4 * w, 4 * w, 1),
            _separable(4 * w, 6 * w, 2),  # 16
            _separable(6 * w, 6 * w, 1),
            _separable(6 * w, 8 * w, 2),  # 8
        )
        self.head = nn.Linear(16 * w, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores (before the sigmoid), shape ``(batch,)``."""
        f = self.features(x)
        pooled = torch.cat([torch.amax(f, dim=(2, 3)), torch.mean(f, dim=(2, 3))], dim=1)
        out: torch.Tensor = self.head(pooled).squeeze(1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of burned-in text per frame, shape ``(batch,)``."""
        return torch.sigmoid(self.logits(x))

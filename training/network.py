"""A small MobileNetV2-style CNN for greyscale radiographs, with a class activation map output."""

from __future__ import annotations

import torch
from torch import nn


def _round_channels(channels: float, divisor: int = 8) -> int:
    return max(divisor, int(channels + divisor / 2) // divisor * divisor)


class ConvBnAct(nn.Sequential):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBnAct(in_ch, hidden, kernel=1))
        layers += [
            ConvBnAct(hidden, hidden, stride=stride, groups=hidden),
            ConvBnAct(hidden, out_ch, kernel=1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


# (expand, channels, repeats, stride), as in MobileNetV2 (Sandler et al. 2018), table 2.
MOBILENET_V2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 1),  # stride 1 (not 2): a 14x14 map for the CAM heatmap
    (6, 320, 1, 1),
]


class TriageNet(nn.Module):
    """Greyscale CNN -> one logit per output (abnormal + findings) and a class activation map.

    The head is a linear layer over globally averaged features, so each logit is exactly the
    spatial mean of its CAM plane: cam[k] = W[k] . features + b[k]. That gives a heatmap with
    no gradients, exportable to ONNX (Zhou et al. 2016, "Learning Deep Features for
    Discriminative Localization").
    """

    def __init__(
        self, num_outputs: int, width: float = 1.0, last_channels: int = 512, dropout: float = 0.2
    ) -> None:
        super().__init__()
        stem = _round_channels(32 * width)
        layers: list[nn.Module] = [ConvBnAct(1, stem, stride=2)]
        in_ch = stem
        for expand, channels, repeats, stride in MOBILENET_V2_STAGES:
            out_ch = _round_channels(channels * width)
            for index in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expand))
                in_ch = out_ch
        layers.append(ConvBnAct(in_ch, last_channels, kernel=1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(last_channels, num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.head(self.dropout(features.mean(dim=(2, 3))))

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        logits = self.head(features.mean(dim=(2, 3)))
        cam = torch.einsum("kc,bchw->bkhw", self.head.weight, features)
        cam = cam + self.head.bias[None, :, None, None]
        return logits, cam


class ExportWrapper(nn.Module):
    """What the ONNX file computes: sigmoid scores (B, K) and raw CAM logits (B, K, h, w)."""

    def __init__(self, net: TriageNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, cam = self.net.forward_with_cam(x)
        return torch.sigmoid(logits), cam

"""ArcFace's IResNet-100 (insightface), with insightface's module names, as MICA loads it.

Follows deepinsight/insightface ``recognition/arcface_torch/backbones/iresnet.py``
(``IBasicBlock``, ``IResNet``, ``iresnet100`` = layers [3, 13, 30, 3]) and Zielon/MICA
``micalib/models/arcface.py`` (``Arcface(IResNet)``): a (B, 3, 112, 112) aligned face in
[-1, 1] RGB gives a (B, 512) identity feature.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-05


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        out = self.bn3(self.conv2(out))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet100(nn.Module):
    """(B, 3, 112, 112) -> (B, 512), the feature before ArcFace's normalisation."""

    def __init__(self, num_features: int = 512) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=EPS)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 13)
        self.layer3 = self._make_layer(256, 30)
        self.layer4 = self._make_layer(512, 3)
        self.bn2 = nn.BatchNorm2d(512, eps=EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=EPS)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(  # every stage halves the size (stride 2)
            nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(planes, eps=EPS),
        )
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 512)
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 7, 7)
        x = self.dropout(self.bn2(x).flatten(1))  # (B, 25088)
        return self.features(self.fc(x))

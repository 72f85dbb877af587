"""Models written with plain ``torch.nn`` (no torchvision, which cannot sit beside every torch).

* :class:`SmallCNN`: a few conv-BN-ReLU blocks for small images (8x8 digits up to 32x32 CIFAR);
* :func:`resnet18`: ResNet-18 (He et al. 2016), the main architecture of both papers. With
  ``small_input=True`` (the default for images up to 64 px) it uses the CIFAR stem (3x3 conv,
  stride 1, no max-pool) as the k-mixup and zeta-mixup CIFAR experiments do; otherwise the
  ImageNet stem (7x7 stride-2 conv + max-pool).
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """conv(w) -> conv(w) -> pool -> conv(2w) -> conv(2w) -> global average pool -> linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(in_channels, width), _conv_bn(width, width), nn.MaxPool2d(2),
            _conv_bn(width, 2 * width), _conv_bn(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), in_channels: int = 3, num_classes: int = 1000,
                 small_input: bool = False, width: int = 64):
        super().__init__()
        if small_input:
            stem = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True)]
        else:
            stem = [nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        self.stem = nn.Sequential(*stem)
        blocks, cin = [], width
        for i, n in enumerate(layers):
            cout = width * 2 ** i
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # zero-init the last BN of each residual branch
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18(in_channels: int = 3, num_classes: int = 1000, small_input: bool = False) -> ResNet:
    """ResNet-18: 4 stages of 2 basic blocks, 64-128-256-512 channels (11.2M parameters at
    1000 classes with the ImageNet stem)."""
    return ResNet((2, 2, 2, 2), in_channels, num_classes, small_input)


MODELS = ("small_cnn", "resnet18")


def build_model(name: str, in_channels: int, num_classes: int, image_size: int,
                width: int = 32) -> nn.Module:
    """``"small_cnn"`` (``width`` channels in its first block) or ``"resnet18"`` (CIFAR stem
    for images up to 64 px)."""
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, width)
    if name == "resnet18":
        return resnet18(in_channels, num_classes, small_input=image_size <= 64)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")

"""The insightface arcface_torch backbones, rebuilt in PyTorch for facetrain's interop tests.

Same module tree, parameter and buffer names, shapes and forward computation as insightface
`recognition/arcface_torch/backbones/iresnet.py` and `mobilefacenet.py` (written here from their
published structure, so the tests need no insightface checkout). facetrain's C++ backbones must
load these models' state dicts and produce the same embeddings, and the reverse.

    model = build("iresnet50", embedding_size=512)
    model = build("mobilefacenet", embedding_size=64, blocks=(1, 1, 1, 1), scale=1)
"""

import torch
from torch import nn

IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
MBF_DEFAULTS = {"mobilefacenet": ((1, 4, 6, 2), 2), "mobilefacenet_large": ((2, 8, 12, 4), 4)}


def _conv(cin, cout, kernel, stride=1, padding=0, groups=1):
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv(inplanes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv(planes, planes, 3, stride, 1)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(_conv(inplanes, planes, 1, stride), nn.BatchNorm2d(planes, eps=1e-05))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, dropout=0.0, num_features=512):
        super().__init__()
        self.conv1 = _conv(3, 64, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = []
            for b in range(blocks):
                stage.append(IBasicBlock(inplanes, planes, 2 if b == 0 else 1))
                inplanes = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*stage))
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding, groups=1):
        super().__init__()
        self.layers = nn.Sequential(_conv(cin, cout, kernel, stride, padding, groups), nn.BatchNorm2d(cout),
                                    nn.PReLU(cout))

    def forward(self, x):
        return self.layers(x)


class LinearBlock(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding, groups=1):
        super().__init__()
        self.layers = nn.Sequential(_conv(cin, cout, kernel, stride, padding, groups), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.layers(x)


class DepthWise(nn.Module):
    def __init__(self, cin, cout, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(ConvBlock(cin, groups, 1, 1, 0), ConvBlock(groups, groups, 3, stride, 1, groups),
                                    LinearBlock(groups, cout, 1, 1, 0))

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


class Residual(nn.Module):
    def __init__(self, channels, count, groups):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, True, 1, groups) for _ in range(count)])

    def forward(self, x):
        return self.layers(x)


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class GDC(nn.Module):
    def __init__(self, embedding_size):
        super().__init__()
        self.layers = nn.Sequential(LinearBlock(512, 512, 7, 1, 0, 512), Flatten(),
                                    nn.Linear(512, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))

    def forward(self, x):
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c1, 3, 2, 1))
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c1, c1, 3, 1, 1, 64))
        else:
            self.layers.append(Residual(c1, blocks[0], 128))
        self.layers.extend([
            DepthWise(c1, c1, False, 2, 128),
            Residual(c1, blocks[1], 128),
            DepthWise(c1, c2, False, 2, 256),
            Residual(c2, blocks[2], 256),
            DepthWise(c2, c2, False, 2, 512),
            Residual(c2, blocks[3], 256),
        ])
        self.conv_sep = ConvBlock(c2, 512, 1, 1, 0)
        self.features = GDC(num_features)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def build(type_, embedding_size=512, blocks=None, scale=None, dropout=0.0):
    if type_ in IRESNET_LAYERS:
        return IResNet(IRESNET_LAYERS[type_], dropout=dropout, num_features=embedding_size)
    default_blocks, default_scale = MBF_DEFAULTS[type_]
    return MobileFaceNet(embedding_size, tuple(blocks or default_blocks), scale or default_scale)

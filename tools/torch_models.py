"""PyTorch twins of strata's models, with strata's (= torchvision's) state-dict names.

The ImageNet models are torchvision's own; the CIFAR ResNets (projection shortcuts,
He et al. 2015 option B), their plain twins, the compact-head VGG and fmnist-cnn are
defined here, layer for layer as in ``src/models/``.
"""

import torch
import torch.nn as nn
import torchvision

VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def ch(c, width):
    return max(1, int(round(c * width)))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, plain):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.plain = plain
        self.downsample = None
        if not plain and (stride != 1 or c_in != c_out):
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.plain:
            return torch.relu(out)
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class CifarResNet(nn.Module):
    def __init__(self, depth, plain=False, classes=10, width=1.0):
        super().__init__()
        n = (depth - 2) // 6
        c0 = ch(16, width)
        self.conv1 = nn.Conv2d(3, c0, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        c_in = c0
        for s, (c, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            c_out = ch(c, width)
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, stride if i == 0 else 1, plain))
                c_in = c_out
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class CifarVgg(nn.Module):
    """VGG features (torchvision indices) + global pool + Dropout + Linear."""

    def __init__(self, depth, bn=True, classes=10, width=1.0, dropout=0.0):
        super().__init__()
        layers, c_in = [], 3
        for v in VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                c = ch(v, width)
                layers.append(nn.Conv2d(c_in, c, 3, padding=1))
                if bn:
                    layers.append(nn.BatchNorm2d(c))
                layers.append(nn.ReLU())
                c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class FmnistCnn(nn.Module):
    def __init__(self, classes=10, in_channels=1):
        super().__init__()
        layers, c_in = [], in_channels
        for v in [32, 32, "M", 64, 64, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64 * 7 * 7, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def build(name, width=1.0):
    """The twin of strata's ``models::build(name)`` with default configuration."""
    tv = {
        "resnet18": torchvision.models.resnet18,
        "resnet34": torchvision.models.resnet34,
        "resnet50": torchvision.models.resnet50,
    }
    if name in tv:
        return tv[name](weights=None), (3, 224, 224)
    if name.startswith("vgg") and not name.endswith("cifar"):
        fn = getattr(torchvision.models, name.replace("-", "_"))
        return fn(weights=None), (3, 224, 224)
    if name.endswith("-cifar"):
        depth = int(name[3:5])
        return CifarVgg(depth, bn="-bn" in name, width=width), (3, 32, 32)
    if name.startswith("resnet"):
        return CifarResNet(int(name[6:]), width=width), (3, 32, 32)
    if name.startswith("plain"):
        return CifarResNet(int(name[5:]), plain=True, width=width), (3, 32, 32)
    if name == "fmnist-cnn":
        return FmnistCnn(), (1, 28, 28)
    raise ValueError(name)


def formula_state(model):
    """Deterministic parameters and buffers that strata's tests recompute in Rust.

    Tensor ``t`` (index in the sorted state-dict keys), element ``i``:
    ``b = sin(0.7·i + 1.3·t)`` in float64, then, by kind:
    conv/linear weight ``2·b/√fan_in``; norm weight ``1 + 0.2·b``; biases ``0.1·b``;
    running_mean ``0.1·b``; running_var ``1 + 0.5·|b|``; num_batches_tracked 0.
    """
    sd = model.state_dict()
    out = {}
    for t, key in enumerate(sorted(sd)):
        ref = sd[key]
        n = ref.numel()
        b = torch.sin(0.7 * torch.arange(n, dtype=torch.float64) + 1.3 * t)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(ref)
            continue
        if key.endswith("running_mean"):
            v = 0.1 * b
        elif key.endswith("running_var"):
            v = 1.0 + 0.5 * b.abs()
        elif key.endswith("weight") and ref.dim() >= 2:
            fan_in = ref[0].numel()
            v = 2.0 * b / fan_in ** 0.5
        elif key.endswith("weight"):
            v = 1.0 + 0.2 * b
        else:
            v = 0.1 * b
        out[key] = v.to(torch.float32).reshape(ref.shape)
    return out

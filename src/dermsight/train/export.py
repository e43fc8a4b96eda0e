"""ONNX export of a trained LesionNet and the ONNX Runtime vs PyTorch parity check."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from dermsight.train.network import ExportWrapper, LesionNet

OUTPUTS = {
    "logits": "class logits (N, C), before temperature scaling",
    "features": "last feature map (N, F, h, w); its spatial mean is the pooled embedding",
    "cam": "class activation maps (N, C, h, w) = image-part classifier weights x feature map",
}


def export_onnx(net: LesionNet, size: int, path: Path | None = None, opset: int = 17) -> bytes:
    """Export (image, meta) -> (logits, features, cam) with dynamic batch, height and width axes."""
    net = net.eval().to(memory_format=torch.contiguous_format)
    wrapper = ExportWrapper(net).eval()
    x = torch.zeros(2, 3, size, size)
    m = torch.zeros(2, net.meta_dim)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (x, m), buf,  # type: ignore[arg-type]  # a file object works too
            input_names=["image", "meta"],
            output_names=list(OUTPUTS), opset_version=opset, dynamo=False,
            # height and width too: the heatmap (dermsight.camgrid) runs it on the whole image
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "meta": {0: "batch"},
                          "logits": {0: "batch"},
                          **{k: {0: "batch", 2: "map_height", 3: "map_width"}
                             for k in ("features", "cam")}},
        )
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def both_logits(net: LesionNet, onnx_bytes: bytes, x: np.ndarray, m: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime logits, PyTorch eager logits) of the same inputs."""
    from dermsight.onnxsession import ort_session

    sess = ort_session(onnx_bytes)
    onnx_logits = sess.run(["logits"], {"image": x.astype(np.float32),
                                        "meta": m.astype(np.float32)})[0]
    with torch.no_grad():
        torch_logits = net.eval()(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    return onnx_logits, torch_logits


def parity(net: LesionNet, onnx_bytes: bytes, x: np.ndarray, m: np.ndarray) -> float:
    """Max |logit difference| between PyTorch eager and ONNX Runtime on the same inputs."""
    onnx_logits, torch_logits = both_logits(net, onnx_bytes, x, m)
    return float(np.abs(onnx_logits - torch_logits).max())

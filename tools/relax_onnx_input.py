"""Let a bundle's ONNX model take images of any height and width (for the whole-image heatmap).

    .venv/bin/python tools/relax_onnx_input.py --bundle src/dermsight/assets/default \
        --images ../shared/data/isic-subset/images --n 50

Models exported before the input's height and width were symbolic declare ``image`` as
``[batch, 3, S, S]``, although the graph is convolutional and its padding is computed at run time.
This rewrites only that declaration (and names the spatial axes of the ``features`` / ``cam``
outputs): no node and no weight changes, which the script checks. It then runs the original and the
relaxed model at the card's input size on ``--n`` real images and refuses to write unless every
output agrees within ``--tol`` (it reports how many are bit-identical), writes ``model.onnx`` and
refreshes the bundle's manifest. Needs the ``onnx`` package (extra ``[train]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

from dermsight.bundle import ONNX_FILE, load_bundle, write_manifest
from dermsight.io.decode import decode_image
from dermsight.onnxsession import ort_session
from dermsight.preprocess import encode_meta, preprocess


def relaxed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose ``image`` input and 4-d outputs have symbolic spatial axes."""
    out = onnx.ModelProto()
    out.CopyFrom(model)

    def name(dim: onnx.TensorShapeProto.Dimension, label: str) -> None:
        dim.ClearField("dim_value")
        dim.dim_param = label

    image = next(i for i in out.graph.input if i.name == "image")
    dims = image.type.tensor_type.shape.dim
    name(dims[2], "height")
    name(dims[3], "width")
    for o in out.graph.output:
        odims = o.type.tensor_type.shape.dim
        if len(odims) == 4:
            name(odims[2], "map_height")
            name(odims[3], "map_width")
    onnx.checker.check_model(out)
    same_nodes = [n.SerializeToString() for n in model.graph.node] == [
        n.SerializeToString() for n in out.graph.node]
    same_weights = [t.SerializeToString() for t in model.graph.initializer] == [
        t.SerializeToString() for t in out.graph.initializer]
    if not (same_nodes and same_weights):  # pragma: no cover - CopyFrom keeps them
        raise RuntimeError("relaxing the input changed the graph")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True, help="a folder of real JPEGs")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    path = args.bundle / ONNX_FILE
    original = onnx.load(str(path))
    new = relaxed(original)
    data = new.SerializeToString()
    before = ort_session(original.SerializeToString(), threads=1)
    after = ort_session(data, threads=1)
    files = sorted(args.images.glob("*.jpg"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    if len(files) < args.n:
        print(f"only {len(files)} images in {args.images}", file=sys.stderr)
        return 2
    worst = 0.0
    identical = 0
    meta = encode_meta(None, bundle.card.meta_spec)[None]
    for f in files:
        x = preprocess(decode_image(f), bundle.card.input_spec)[None]
        a = before.run(None, {"image": x, "meta": meta})
        b = after.run(None, {"image": x, "meta": meta})
        worst = max(worst, *(float(np.abs(u - v).max()) for u, v in zip(a, b, strict=True)))
        identical += all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    print(f"{len(files)} images at {bundle.card.input_spec.size} px: max |difference| of any "
          f"output {worst:.3g}, all outputs bit-identical on {identical}")
    if worst > args.tol:
        print(f"difference over --tol {args.tol:g}: nothing written", file=sys.stderr)
        return 1
    path.write_bytes(data)
    write_manifest(args.bundle)
    print(f"wrote {path} and refreshed the manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())

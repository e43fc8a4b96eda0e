"""Refit gate v2 of a bundle trained on several data folders (the shipped default) by rerunning
training's own gate step on its config and recorded split, without retraining the network.

    .venv/bin/python tools/refit_trained_gate.py --out /tmp/default-refit      # a refitted copy
    .venv/bin/python tools/refit_trained_gate.py --recoloured --out /tmp/default-refit2
    .venv/bin/python tools/refit_trained_gate.py --out src/dermsight/assets/default  # in place

The gate it writes is the one ``make train`` would fit for the same network with this code
(``dermsight.train.gate_refit.refit_trained``); `dermsight gate fit` covers one-folder bundles.
Needs the [train] extra and the Debian pictures (`make system-deps`), as training does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermsight.bundle import default_bundle_path
from dermsight.train.gate_refit import refit_trained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=default_bundle_path())
    ap.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    ap.add_argument("--split", type=Path, default=Path("configs/default-split.csv"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recoloured", action="store_true",
                    help="add recoloured dermoscopic copies and the gate's third head for them "
                         "(not the shipped gate)")
    args = ap.parse_args()
    ev = refit_trained(args.bundle, args.config, args.split, args.out,
                       recoloured=args.recoloured)
    for kind, v in ev["held_out_false_accept"].items():
        fa = v["false_accept"]
        print(f"{kind}: {fa['k']} of {fa['n']} let through with the kind held out")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

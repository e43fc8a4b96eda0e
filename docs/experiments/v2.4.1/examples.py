"""The eight shipped example images through a bundle, as the README's "Try it" describes them.

    .venv/bin/python docs/experiments/v2.4.1/examples.py src/dermsight/assets/default
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dermsight import Dermsight
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

EXAMPLES = Path("src/dermsight/assets/examples")


def main() -> None:
    model = Dermsight.load(sys.argv[1])
    for e in json.loads((EXAMPLES / "credits.json").read_text())["images"]:
        meta = Metadata.lenient(e.get("age"), e.get("sex"), e.get("site"))
        p = model.predict_batch([decode_image(EXAMPLES / e["file"])], [meta])[0]
        top = max(p.probabilities, key=lambda c: p.probabilities[c])
        print(f"{e['file']}  label {e['diagnosis']}  risk {p.risk}  suggested {p.prediction}  "
              f"arg-max {top} {p.probabilities[top]:.3f}  P(malignant) "
              f"{p.malignant_probability:.3f}")


if __name__ == "__main__":
    main()

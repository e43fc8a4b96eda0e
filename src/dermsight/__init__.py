"""dermsight: decision support for dermoscopic skin-lesion images.

Three lines from Python::

    from dermsight import Dermsight
    model = Dermsight.load()                      # the shipped default bundle
    result = model.predict("lesion.jpg", age=55, sex="female", site="posterior torso")

``except dermsight.DermsightError`` catches the errors dermsight defines for what a user can
cause (an image, metadata, a bundle it cannot use: :mod:`dermsight.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from dermsight.bundle import BundleError
    from dermsight.errors import DermsightError
    from dermsight.io.errors import ImageDecodeError, ReaderError
    from dermsight.predict import Dermsight, Prediction
    from dermsight.taxonomy import TaxonomyError

#: the module each lazily imported name comes from (``import dermsight`` stays cheap, e.g. for
#: the CLI's --help: numpy, Pillow and ONNX Runtime load on first use of a name)
_LAZY = {
    "Dermsight": "dermsight.predict",
    "Prediction": "dermsight.predict",
    "DermsightError": "dermsight.errors",
    "BundleError": "dermsight.bundle",
    "ImageDecodeError": "dermsight.io.errors",
    "ReaderError": "dermsight.io.errors",
    "TaxonomyError": "dermsight.taxonomy",
}

__all__ = ["BundleError", "Dermsight", "DermsightError", "ImageDecodeError", "Prediction",
           "ReaderError", "TaxonomyError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dermsight' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too, so that dir(dermsight), help(dermsight) and completion list them
    return sorted({*globals(), *__all__})

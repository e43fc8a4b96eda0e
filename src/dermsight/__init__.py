"""dermsight: decision support for dermoscopic skin-lesion images.

Three lines from Python::

    from dermsight import Dermsight
    model = Dermsight.load()                      # the shipped default bundle
    result = model.predict("lesion.jpg", age=55, sex="female", site="posterior torso")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from dermsight.predict import Dermsight, Prediction

__all__ = ["Dermsight", "Prediction", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import dermsight` (e.g. for the CLI's --help) stays cheap.
    if name in ("Dermsight", "Prediction"):
        from dermsight import predict

        return getattr(predict, name)
    raise AttributeError(name)

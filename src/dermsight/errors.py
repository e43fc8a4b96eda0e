"""The common base of dermsight's own errors.

``DermsightError`` is the base of every error class dermsight defines for what a user of the
library can cause: an image or data file it cannot use (``ImageDecodeError``, ``ReaderError``),
an age, sex, site or label outside its vocabulary (``TaxonomyError``), a bundle, model card,
reference set or training configuration it cannot use (``BundleError``, ``CardError``,
``ReferenceDataError``, ``ConfigError``), a local update the cases do not support
(``UpdateRefused``, ``AdaptInputError``). ``str()`` says why.

Each keeps its older base too (``ImageDecodeError`` and ``TaxonomyError`` are still
``ValueError``), so code that catches ``ValueError`` goes on catching what it caught. Not
covered: a wrong call (an argument of the wrong type, an array that is not RGB pixels 0-255)
raises Python's own ``TypeError`` / ``ValueError``.

This module imports nothing, so that every other module can use it.
"""

from __future__ import annotations


class DermsightError(Exception):
    """Base of the errors dermsight defines for what a user can cause (``ImageDecodeError``,
    ``TaxonomyError``, ``BundleError``, ... : see :mod:`dermsight.errors`); ``str()`` says
    why."""

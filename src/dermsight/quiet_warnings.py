"""scikit-learn's warnings about small or lopsided data, said once in dermsight's words.

scikit-learn warns with its own file and line (``.../sklearn/metrics/_classification.py:2939:
UserWarning: y_pred contains classes not in y_true``), which reads as a fault of dermsight's.
``sklearn_notes()`` wraps the calls that may warn so (``balanced_accuracy_score`` in training's
validation metrics and the baseline's choice, ``StratifiedGroupKFold.split`` in ``bundle
adapt``'s folds): those two warnings are caught and each situation is told once,
as a ``note:`` line on stderr (or to ``emit``); every other warning goes on as it came.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

#: ``balanced_accuracy_score`` when a predicted class is not among the true labels
_PRED_NOT_TRUE = re.compile(r"^y_pred contains classes not in y_true")
#: ``StratifiedKFold`` / ``StratifiedGroupKFold`` when a class has fewer cases than folds
_FEW_MEMBERS = re.compile(
    r"^The least populated class in y has only (\d+) members?, which is less than "
    r"n_splits=(\d+)")


def _stderr_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def _few_cases_note(found: re.Match[str], labels: Iterable[object] | None) -> str:
    least, folds = int(found.group(1)), int(found.group(2))
    if labels is not None:
        counts = Counter(str(v) for v in labels)
        few = sorted((c for c, n in counts.items() if n < folds), key=lambda c: (counts[c], c))
        if few:
            named = ", ".join(f"{c} ({counts[c]} case{'s' if counts[c] != 1 else ''})"
                              for c in few)
            verb = "has" if len(few) == 1 else "have"
            return (f"class{'es' if len(few) != 1 else ''} {named} {verb} fewer cases than the "
                    f"{folds} folds: not every fold can hold {'it' if len(few) == 1 else 'them'}")
    return (f"the least common class has only {least} case{'s' if least != 1 else ''}, fewer "
            f"than the {folds} folds: not every fold can hold it")


def note_for(message: str, labels: Iterable[object] | None = None) -> str | None:
    """dermsight's words for one of the scikit-learn warnings ``sklearn_notes`` catches; None
    for any other warning."""
    if _PRED_NOT_TRUE.match(message):
        return ("the model predicted classes that none of the evaluated images has: balanced "
                "accuracy averages the recall of the classes the images have")
    found = _FEW_MEMBERS.match(message)
    if found:
        return _few_cases_note(found, labels)
    return None


@contextmanager
def sklearn_notes(emit: Callable[[str], None] | None = None, *,
                  labels: Iterable[object] | None = None,
                  told: set[str] | None = None) -> Iterator[list[str]]:
    """Catch scikit-learn's "y_pred contains classes not in y_true" and "The least populated
    class in y has only N members" warnings raised inside the block, and tell each situation
    once, after the block, through ``emit`` (default: a ``note:`` line on stderr). ``labels``
    (the class of each case given to the fold split) lets the note name the classes with fewer
    cases than folds. ``told``: the notes told already (by earlier blocks, e.g. one per
    epoch), not told again; the new ones are added to it. Other warnings are passed on
    unchanged, each once. Yields the list the notes are gathered in (filled when the block
    ends).

    Not thread-safe (``warnings.catch_warnings`` is not): use it around the calls of one
    thread, as the CLI does."""
    emit = emit or _stderr_note
    told = set() if told is None else told
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # each one seen here; told once below
        try:
            yield notes
        finally:
            passed: dict[tuple[str, type[Warning], str, int], warnings.WarningMessage] = {}
            for w in caught:
                note = note_for(str(w.message), labels) if issubclass(
                    w.category, UserWarning) else None
                if note is None:
                    passed.setdefault((str(w.message), w.category, w.filename, w.lineno), w)
                elif note not in notes and note not in told:
                    notes.append(note)
    told.update(notes)
    for w in passed.values():  # outside the block: under the caller's own filters again
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                               source=w.source)
    for note in notes:
        emit(note)

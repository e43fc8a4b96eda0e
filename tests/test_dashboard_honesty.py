"""The clinic dashboard says what its figures rest on: a perfect melanoma AUC on few lesions is
no "1.000 to 1.000" and names its melanomas and others; a lesion confirmed Other / unknown (UNK)
is neither benign nor malignant, so it is in no sensitivity, specificity or AUC (the note says
so); and the confirmed-case export's README says the data is pseudonymised, not anonymous."""

from __future__ import annotations

from collections import Counter

from dermsight import taxonomy
from dermsight.clinic.exports import CONFIRMED_COLUMNS, _readme
from dermsight.clinic.figures import ConfirmedItem, model_figures


def _item(i: int, code: str, p_mel: float, referred: bool, prediction: str) -> ConfirmedItem:
    rest = (1.0 - p_mel) / (len(taxonomy.CLASS_CODES) - 1)
    probs = {c: (p_mel if c == "MEL" else rest) for c in taxonomy.CLASS_CODES}
    return ConfirmedItem(patient_id=i, lesion_id=100 + i, code=code, referred=referred,
                         probabilities=probs, prediction=prediction)


def test_perfect_melanoma_auc_on_few_lesions_is_no_degenerate_interval() -> None:
    items = [_item(i, "MEL", 0.9 - i * 0.01, True, "MEL") for i in range(6)]
    items += [_item(10 + i, "NV", 0.1 + i * 0.01, False, "NV") for i in range(9)]
    auc = model_figures("m", "1", items)["mel_auc"]
    assert auc["value"] == 1.0
    # no "1.000 (1.000-1.000)": either no interval, with the reason, or a wide one
    if auc["lo"] is None:
        assert auc["hi"] is None
        assert "too few cases" in auc["note"]
    else:
        assert auc["lo"] < 0.9
    assert (auc["positives"], auc["negatives"], auc["n"]) == (6, 9, 15)


def test_unk_lesion_is_in_no_rate_and_the_note_says_so() -> None:
    items = [_item(i, c, 0.8, True, "MEL") for i, c in enumerate(["MEL", "MEL", "BCC", "SCC",
                                                                   "MEL"])]
    items += [_item(10 + i, "NV", 0.05, False, "NV") for i in range(5)]
    items.append(_item(20, taxonomy.UNSPECIFIED, 0.05, False, "NV"))
    m = model_figures("m", "1", items)
    spec = m["refer"]["specificity"]
    assert (spec["k"], spec["n"]) == (5, 5)
    assert m["refer"]["sensitivity"]["n"] == 5
    assert m["mel_auc"] is None or m["mel_auc"]["n"] == 10
    assert "UNK" in m["note"]
    assert "neither benign nor malignant" in m["note"]
    # the confusion matrix keeps its UNK row: UNK is one of the model's classes
    labels, matrix = m["confusion"]["labels"], m["confusion"]["matrix"]
    assert matrix[labels.index("UNK")][labels.index("NV")] == 1
    assert m["n_lesions"] == 11


def test_confirmed_export_readme_says_the_data_is_pseudonymised() -> None:
    text = _readme(3, Counter())
    assert "pseudonymised" in text
    assert "not an anonymous" in text
    for column in ("taken_at", "age_approx", "group_id", "lesion_id", "image_id"):
        assert column in CONFIRMED_COLUMNS
        assert column in text

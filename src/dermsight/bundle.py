"""The model bundle: a folder with ``model.onnx`` + ``card.json`` (+ optional ``gate.npz``,
``report.html``). The card carries everything needed to use the model correctly: classes,
preprocessing, metadata layout, temperature, risk thresholds, the out-of-distribution gate and the
honest test metrics. Loading checks the card against its typed schema (``dermsight.cardschema``)
and the sha256 of every file the bundle
loads or serves (``model.onnx``, ``gate.npz``, ``report.html``, ``plots/*.png``,
``reference/*``) against the
card's ``files`` manifest. Anything that writes or changes a bundle file must finish with
:func:`write_manifest` (``save_bundle`` does). It also checks, without running the model, that
the contents fit (:func:`load_bundle`): ``gate.npz`` is there and holds every array the card's
gate reads, the reference set is readable; ``onnxsession`` refuses an ONNX file ONNX Runtime cannot
read, and :func:`check_features` (the facade, as it opens the model) a gate or reference set of
other features than the network's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import gate, taxonomy
from dermsight.cardschema import (
    RUNTIME_KEYS,
    SCHEMA_VERSION,
    CardError,
    Thresholds,
    default_malignant,
    gate_config,
    validate_card,
)
from dermsight.decision import DecisionRule
from dermsight.errors import DermsightError
from dermsight.preprocess import InputSpec, MetaSpec

__all__ = ["SCHEMA_VERSION", "Bundle", "BundleError", "Card", "Thresholds", "card_sha256",
           "check_features", "load_bundle", "save_bundle", "staged_bundle", "unfinished_reason",
           "write_manifest"]
CARD_FILE = "card.json"
ONNX_FILE = "model.onnx"
GATE_FILE = "gate.npz"
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
#: the similar-cases reference set (:mod:`dermsight.similar`)
REFERENCE_DIR = "reference"
#: card key holding ``{relative path: sha256}`` of every covered file
MANIFEST_KEY = "files"
#: the ONNX output whose axis 1 is the width of the pooled features (``Dermsight.run_arrays``)
FEATURES_OUTPUT = "features"
#: the card ``status`` of the provisional bundle finalize scores through before it has fitted
#: the temperature, thresholds and gate (``train.finalize.scoring.serving_model``); finalize
#: replaces it with ``"trained"`` (or ``NOT_VALIDATED``). Loading refuses such a card
#: (:func:`unfinished_reason`).
PROVISIONAL = "provisional"
#: the card ``status`` of a finished bundle whose own test figures do not show that it works
#: (too few test images, figures not above chance; a smoke-test length of training or a
#: ``data.limit`` subsample is named among the reasons:
#: ``train.finalize.card.validation_concerns``); its first limitation, which starts with
#: ``NOT_VALIDATED_LIMITATION_START``, says why. Loading it says so once (:func:`load_bundle`).
NOT_VALIDATED = "not validated"
NOT_VALIDATED_LIMITATION_START = "Not for clinical use: "
#: the suffixes of the sibling folders :func:`staged_bundle` builds a bundle in
#: (``bundle.partial-<pid>``) and keeps the bundle it replaces in while it swaps
#: (``bundle.old-<pid>``); a folder left by an interrupted run is tidied by the next one
PARTIAL_SUFFIX = ".partial-"
BACKUP_SUFFIX = ".old-"


class BundleError(DermsightError):
    """A bundle that is missing, unreadable, incompatible or tampered with."""


#: what reading a damaged ``.npz`` archive may raise (numpy, zipfile, zlib)
_NPZ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
#: the ``.npy`` header reader of each format version ``np.savez`` writes
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def npz_arrays(path: Path, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (those in ``names``, else all), never unpickling.
    ``ValueError`` with a readable reason for a file that is not such an archive or lacks one
    of ``names`` (numpy alone would talk about pickled data for any file that is not a zip)."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (z.files if names is None else names) if k in z.files}
    except _NPZ_ERRORS as exc:
        raise ValueError(_reason(exc)) from exc
    missing = [k for k in names or () if k not in arrays]
    if missing:
        raise ValueError(f"no array {', '.join(map(repr, missing))}")
    odd = [k for k, a in arrays.items() if not isinstance(a, np.ndarray)]  # numpy: raw bytes
    if odd:
        raise ValueError(f"{odd[0]!r} is not a .npy array")
    return arrays


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in an ``.npz`` archive, from the ``.npy`` headers alone (no
    array data is read). ``ValueError`` with a readable reason for a damaged archive."""
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in _NPY_HEADERS:
                        raise ValueError(f"{name}: .npy format {version} is not supported")
                    shape = _NPY_HEADERS[version](f)[0]
                shapes[name.removesuffix(".npy")] = tuple(int(d) for d in shape)
    except zipfile.BadZipFile:
        raise ValueError("not a .npz archive") from None
    except _NPZ_ERRORS as exc:
        raise ValueError(_reason(exc)) from exc
    return shapes


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (``dermsight/assets/default``)."""
    return Path(str(resources.files("dermsight") / "assets" / "default"))


@dataclass
class Card:
    """The card as the runtime uses it. ``from_dict`` checks a ``card.json`` against the typed
    schema (:mod:`dermsight.cardschema`) first; ``extra`` holds the report section as written."""

    name: str
    version: str
    classes: list[str]
    input_spec: InputSpec
    meta_spec: MetaSpec
    temperature: float
    thresholds: Thresholds
    onnx_sha256: str
    outputs: dict[str, str] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # metrics, training, intended use, ...
    #: the integrity manifest: ``{relative path: sha256}`` (see ``write_manifest``)
    files: dict[str, str] = field(default_factory=dict)
    #: how the suggested class is chosen (plain arg-max unless the card says otherwise)
    decision: DecisionRule = field(default_factory=DecisionRule)
    #: classes summed into the malignant probability; empty when constructed means the
    #: taxonomy's malignant classes among ``classes`` (filled in here, then written to the card)
    malignant: list[str] = field(default_factory=list)
    #: classes left out of the malignant probability's denominator (:mod:`dermsight.malignancy`)
    malignant_excluded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.malignant:
            self.malignant = default_malignant(self.classes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "classes": self.classes,
            "class_names": {c: taxonomy.BY_CODE[c].name for c in self.classes},
            "malignant": list(self.malignant),
            "malignant_excluded": list(self.malignant_excluded),
            "input_spec": self.input_spec.to_dict(),
            "meta_spec": self.meta_spec.to_dict(),
            "temperature": self.temperature,
            "thresholds": {"refer": self.thresholds.refer, "monitor": self.thresholds.monitor},
            "onnx": {"file": ONNX_FILE, "sha256": self.onnx_sha256, "outputs": self.outputs},
            "gate": self.gate,
            "decision": self.decision.to_dict(),
        }
        d.update({k: v for k, v in self.extra.items() if k not in RUNTIME_KEYS})
        if self.files:
            d[MANIFEST_KEY] = dict(self.files)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Card:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"card schema_version {version!r} is not supported by this dermsight "
                f"(expects {SCHEMA_VERSION}); re-export the bundle or upgrade dermsight"
            )
        try:
            doc = validate_card(d)
        except CardError as exc:
            raise BundleError(f"card.json does not match the card schema: {exc}") from None
        raw_gate = d.get("gate")
        return cls(
            name=doc.name,
            version=doc.version,
            classes=list(doc.classes),
            input_spec=doc.input_spec.to_spec(),
            meta_spec=doc.meta_spec.to_spec(),
            temperature=doc.temperature,
            thresholds=doc.thresholds,
            onnx_sha256=doc.onnx.sha256,
            outputs=dict(doc.onnx.outputs),
            gate=gate_config(doc.gate, raw_gate if isinstance(raw_gate, dict) else {}),
            extra={k: v for k, v in d.items() if k not in RUNTIME_KEYS},
            files=dict(doc.files),
            decision=doc.decision.to_rule() if doc.decision else DecisionRule(),
            malignant=list(doc.malignant or default_malignant(doc.classes)),
            malignant_excluded=list(doc.malignant_excluded),
        )


@dataclass
class Bundle:
    path: Path
    card: Card
    gate_arrays: dict[str, np.ndarray]
    #: the bundle's identity (``card_sha256``), taken when it was loaded
    card_sha256: str
    #: (images, features) of the reference set's embeddings (None without one), from its headers
    reference_shape: tuple[int, int] | None = None

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def report_path(self) -> Path | None:
        p = self.path / REPORT_FILE
        return p if p.exists() else None


def covered_files(root: Path) -> list[str]:
    """The bundle files the manifest covers (those present): everything dermsight loads or
    serves from a bundle. ``card.json`` holds the manifest, so it is not in it."""
    names = [n for n in (ONNX_FILE, GATE_FILE, REPORT_FILE) if (root / n).exists()]
    plots = root / PLOTS_DIR
    if plots.is_dir():
        names += sorted(f"{PLOTS_DIR}/{p.name}" for p in plots.glob("*.png"))
    reference = root / REFERENCE_DIR
    if reference.is_dir():
        names += sorted(f"{REFERENCE_DIR}/{p.name}" for p in reference.iterdir() if p.is_file())
    return names


def _read_card_json(card_path: Path) -> dict[str, Any]:
    """``card.json`` as a JSON object; anything else is a ``BundleError`` that names the file."""
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {card_path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{card_path} must hold a JSON object")
    return raw


def card_sha256(bundle_dir: str | Path) -> str:
    """A bundle's identity: the sha256 of its ``card.json`` bytes. The card holds the sha256 of
    every other bundle file (the manifest) besides the decision rule, thresholds and gate, so two
    bundles of one name and version (every ``dermsight train`` run's, a re-tuned copy) differ
    in it whenever they can answer differently. Batch outputs record it per row."""
    return sha256_file(Path(bundle_dir) / CARD_FILE)


def write_manifest(bundle_dir: str | Path) -> dict[str, str]:
    """(Re)write the integrity manifest of a bundle folder in place and return it.

    Hashes every covered file present (``model.onnx``, ``gate.npz``, ``report.html``,
    ``plots/*.png``) into ``card.json``'s ``files`` (and ``onnx.sha256``). Call it after any
    change to a bundle's files; ``save_bundle`` calls it. The rest of the card is kept as is.
    """
    root = Path(bundle_dir)
    card_path = root / CARD_FILE
    raw = _read_card_json(card_path)
    files = {name: sha256_file(root / name) for name in covered_files(root)}
    raw[MANIFEST_KEY] = files
    if ONNX_FILE in files and isinstance(raw.get("onnx"), dict):
        raw["onnx"]["sha256"] = files[ONNX_FILE]
    tmp = card_path.with_name(f".{CARD_FILE}.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(card_path)
    return files


def verify_files(root: Path, card: Card, skip: str | None = None) -> None:
    """Check every covered file against the card's manifest; ``BundleError`` on any mismatch.
    ``skip``: a folder whose files are not checked (the reference set ``reference build`` is
    about to replace)."""
    if not card.files:
        raise BundleError(
            f"{root / CARD_FILE} has no '{MANIFEST_KEY}' integrity manifest (a bundle from an "
            "older dermsight): re-export it, or rewrite the manifest with "
            "dermsight.bundle.write_manifest if you trust its files"
        )
    def checked(name: str) -> bool:
        return skip is None or not name.startswith(f"{skip}/")

    present = [n for n in covered_files(root) if checked(n)]
    unlisted = [n for n in present if n not in card.files]
    if unlisted:
        raise BundleError(
            f"{root / unlisted[0]} is not in the bundle's '{MANIFEST_KEY}' manifest: "
            "the bundle was changed after it was written"
        )
    for name, expected in sorted(card.files.items()):
        if not checked(name):
            continue
        path = root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise BundleError(f"card.json: bad file name in '{MANIFEST_KEY}': {name[:80]!r}")
        if not path.is_file():
            raise BundleError(f"{path} is listed in the bundle's manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{path} does not match its card (sha256 {actual[:12]}… != {expected[:12]}…): "
                "the file was changed or corrupted"
            )


#: the subfolder of a training run folder (``dermsight train --out``) that holds its bundle
RUN_BUNDLE_DIR = "bundle"


def check_bundle_folder(root: Path) -> None:
    """``BundleError`` unless ``root`` is a folder with a card and an ONNX file (its contents
    are checked by ``load_bundle``); a training run folder given for its bundle is named as such,
    with the path of its bundle. Every entry point that opens a bundle goes through here."""
    if not root.exists():
        raise BundleError(f"model bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"model bundle must be a folder with {ONNX_FILE} and {CARD_FILE}: {root}")
    if not (root / CARD_FILE).exists():
        if (root / RUN_BUNDLE_DIR / CARD_FILE).is_file():
            raise BundleError(f"{root} is a training run folder, not a bundle: its bundle is "
                              f"{root / RUN_BUNDLE_DIR}")
        raise BundleError(f"{root} is not a dermsight bundle: no {CARD_FILE}")
    if not (root / ONNX_FILE).exists():
        raise BundleError(f"{root} is not a dermsight bundle: no {ONNX_FILE}")


def unfinished_reason(card: Card) -> str | None:
    """Why ``card`` is not a finished model's card, or None when it is: the provisional card
    finalize scores through (``status: "provisional"``), or one with no metrics and a refer
    threshold of 1 or more (a provisional card of an older dermsight, without the marker). Its
    temperature, thresholds and gate are placeholders: every lesion would be called low risk
    and no image refused."""
    if card.extra.get("status") == PROVISIONAL:
        return f"its card is marked status {PROVISIONAL!r}"
    if not card.extra.get("metrics") and card.thresholds.refer >= 1.0:
        return (f"its card has no metrics and a refer threshold of {card.thresholds.refer:g}, "
                "as only a provisional card has")
    return None


def not_validated_warning(card: Card) -> str | None:
    """The line said when a bundle whose card is marked ``NOT_VALIDATED`` is loaded (its
    limitation that says why included), or None for any other card."""
    if card.extra.get("status") != NOT_VALIDATED:
        return None
    limitations = card.extra.get("limitations")
    why = next((str(x) for x in limitations if str(x).startswith(NOT_VALIDATED_LIMITATION_START)),
               None) if isinstance(limitations, list) else None
    return (f"model {card.name} {card.version} is marked {NOT_VALIDATED!r} by its card: "
            + (why or "research use only, not for clinical use (its card's limitations say why)"))


#: the bundles (path, card sha256) this process has said ``not_validated_warning`` for
_WARNED_NOT_VALIDATED: set[tuple[str, str]] = set()


def _say_not_validated(root: Path, card: Card, identity: str) -> None:
    """Say ``not_validated_warning`` once per bundle and process: a log warning where logging
    is set up (``dermsight serve``), else one ``warning:`` line on stderr (the CLI)."""
    line = not_validated_warning(card)
    key = (str(root.resolve()), identity)
    if line is None or key in _WARNED_NOT_VALIDATED:
        return
    _WARNED_NOT_VALIDATED.add(key)
    log = logging.getLogger("dermsight.bundle")
    if log.hasHandlers():
        log.warning("%s: %s", root, line)
    else:
        print(f"warning: {root}: {line}", file=sys.stderr, flush=True)


def load_bundle(path: str | Path | None = None, verify: bool = True,
                reference: bool = True, provisional: bool = False,
                warn: bool = True) -> Bundle:
    """Load and validate a bundle folder (the shipped default when ``path`` is None).
    ``reference=False``: its reference set is neither checked nor read (``dermsight reference
    build`` replaces it, so a missing, damaged or stale one must not stop it). A provisional
    bundle (:func:`unfinished_reason`) is refused unless ``provisional`` (finalize alone scores
    through one). A bundle marked ``NOT_VALIDATED`` loads, with one warning per process unless
    ``warn`` is False (finalize, which says it itself)."""
    root = Path(path) if path is not None else default_bundle_path()
    check_bundle_folder(root)
    card_path = root / CARD_FILE
    card = Card.from_dict(_read_card_json(card_path))
    if not provisional and (why := unfinished_reason(card)) is not None:
        raise BundleError(
            f"{root} is not a finished bundle: {why}; its risk thresholds, temperature and gate "
            "are placeholders (a training or export that was interrupted leaves such a card). "
            "Make the bundle again (dermsight export RUN, or dermsight train with --stage "
            "finalize) or use a finished bundle")
    identity = card_sha256(root)  # read above: a card that cannot be read is a BundleError
    if verify:
        if card.files.get(ONNX_FILE, card.onnx_sha256) != card.onnx_sha256:
            raise BundleError(f"{card_path}: onnx.sha256 disagrees with '{MANIFEST_KEY}'")
        verify_files(root, card, skip=None if reference else REFERENCE_DIR)
    gate_arrays = load_gate(root / GATE_FILE, card.gate)
    if warn:
        _say_not_validated(root, card, identity)
    return Bundle(path=root, card=card, gate_arrays=gate_arrays, card_sha256=identity,
                  reference_shape=check_reference(root, gate_arrays) if reference else None)


#: the ``gate.npz`` arrays ``dermsight.gate`` reads for each key of the card's gate (none of
#: them without ``ood_threshold``): gate v1's kNN score, gate v2's blocking head, its
#: clinical-photo head and its recoloured-image head
GATE_ARRAYS = {"ood_threshold": ("bank", "k"),
               "v2_threshold": ("v2_mean", "v2_scale", "v2_w", "v2_b"),
               "v2_clinical_threshold": ("v2c_w", "v2c_b"),
               "v2_recoloured_threshold": ("v2r_w", "v2r_b")}


def load_gate(path: Path, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of ``gate.npz`` (none without the file), checked against the card's gate
    ``cfg``: ``BundleError`` for a file that is missing although the card's gate reads it, not
    an ``.npz`` archive, lacks an array the gate reads, or whose arrays the gate cannot run on
    (it is run once on made-up features)."""
    if not path.exists():
        if "ood_threshold" in cfg:  # else every image would pass unchecked
            raise BundleError(f"{path} is missing, but the card's gate (its ood_threshold) needs "
                              "it to refuse images the model is not built for: restore the "
                              "bundle's own gate.npz or re-export the bundle (training fits "
                              "the gate)")
        return {}
    try:
        raw = npz_arrays(path)
    except ValueError as exc:
        raise BundleError(f"{path} is unreadable: {exc}") from exc
    # float16 on disk (half the size); float32 in memory so no request pays a conversion
    arrays = {k: a.astype(np.float32) if a.dtype == np.float16 else a for k, a in raw.items()}
    if "ood_threshold" not in cfg:
        return arrays
    missing = [name for key, names in GATE_ARRAYS.items() if key in cfg for name in names
               if name not in arrays]
    if missing:
        raise BundleError(f"{path} has no {', '.join(map(repr, missing))} "
                          f"array{'s' if len(missing) > 1 else ''}, which the card's gate "
                          "needs: refit the gate or re-export the bundle")
    bank, k = arrays["bank"], arrays["k"]
    if bank.ndim != 2 or not bank.size:
        raise BundleError(f"{path}: 'bank' must be a non-empty (images, features) array, not "
                          f"of shape {bank.shape}")
    whole = k.shape == () and k.dtype.kind in "iuf" and float(k).is_integer()
    if not whole or not 1 <= int(k) <= len(bank):
        raise BundleError(f"{path}: 'k' must be one whole number from 1 to the bank's "
                          f"{len(bank)} images, not {k.tolist()!r}"[:300])
    quality = gate.QualityStats(min_side=0, mean=0.0, std=0.0, clipped=0.0, sharpness=0.0,
                                saturation=0.0).as_vector()
    try:
        gate.ood_flags(np.ones((1, bank.shape[1]), np.float32), cfg, arrays, quality[None])
    except (ValueError, TypeError, IndexError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BundleError(f"{path}: its arrays do not fit the card's gate: {reason}") from exc
    return arrays


def check_reference(root: Path, gate_arrays: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """Check the bundle's reference set, if it has one, as far as that is quick
    (``similar.ReferenceSet.check``), and that its features are as wide as the gate's. The shape
    of its embeddings; None without one."""
    from dermsight.similar import ReferenceSet

    shape = ReferenceSet.check(root)  # ReferenceError is a BundleError
    bank = gate_arrays.get("bank")
    if shape is not None and bank is not None and bank.ndim == 2 and bank.shape[1] != shape[1]:
        raise BundleError(f"{root / REFERENCE_DIR}: its embeddings have {shape[1]} features but "
                          f"{root / GATE_FILE}'s bank {bank.shape[1]}: not the same model's")
    return shape


def check_features(bundle: Bundle, width: int | None, outputs: int | None = None) -> None:
    """Check that the card's gate bank and the reference set's embeddings are as wide as the
    network's pooled features, ``width``, and that the network gives one output per card class,
    ``outputs`` (both from the ONNX file's declared output shapes, so nothing is run; None when
    not declared: nothing to check, ``bundle verify`` runs the network). ``BundleError`` naming
    both numbers: each prediction would fail or name the wrong classes."""
    n_classes = len(bundle.card.classes)
    if outputs is not None and outputs != n_classes:
        raise BundleError(f"the network in {bundle.path / ONNX_FILE} gives {outputs} outputs but "
                          f"the card lists {n_classes} classes: not this model's card; restore "
                          "the bundle's own card.json or re-export the bundle")
    if width is None:
        return
    bank = bundle.gate_arrays.get("bank") if "ood_threshold" in bundle.card.gate else None
    held = ((f"{GATE_FILE}'s bank", None if bank is None else bank.shape[1],
             f"restore the {GATE_FILE} exported with this model or re-export the bundle"),
            ("the reference set", None if bundle.reference_shape is None
             else bundle.reference_shape[1],
             f"restore the bundle's own {REFERENCE_DIR}/ or rebuild it for this model "
             "(dermsight reference build)"))
    for what, features, fix in held:
        if features is not None and features != width:
            raise BundleError(f"the network in {bundle.path / ONNX_FILE} gives {width} features "
                              f"but {what} holds {features}: not this model's; {fix}")


def save_bundle(
    out: str | Path,
    onnx_bytes_or_path: bytes | Path,
    card: Card,
    gate_arrays: dict[str, np.ndarray] | None = None,
    report_html: str | None = None,
) -> Path:
    """Write a bundle folder, then its integrity manifest (``write_manifest``) from the files
    actually written (plots already in ``out/plots`` are covered too)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = root / ONNX_FILE
    if isinstance(onnx_bytes_or_path, bytes):
        onnx_path.write_bytes(onnx_bytes_or_path)
    elif Path(onnx_bytes_or_path).resolve() != onnx_path.resolve():
        onnx_path.write_bytes(Path(onnx_bytes_or_path).read_bytes())
    card.onnx_sha256 = sha256_file(onnx_path)
    card.files = {}
    d = card.to_dict()
    try:
        validate_card(d)  # a writer never leaves a card that loading would refuse
    except CardError as exc:
        raise BundleError(f"refusing to write a card that does not match the schema: {exc}") \
            from None
    (root / CARD_FILE).write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    if gate_arrays:
        np.savez(root / GATE_FILE, **gate_arrays)  # type: ignore[arg-type]
    if report_html is not None:
        (root / REPORT_FILE).write_text(report_html, encoding="utf-8")
    card.files = write_manifest(root)
    return root


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _leftover_pid(path: Path, dst: Path, suffix: str) -> int | None:
    """The pid in ``<dst><suffix><pid>`` (digits only), or ``None`` for any other name."""
    rest = path.name[len(dst.name) + len(suffix):] if path.name.startswith(
        f"{dst.name}{suffix}") else ""
    return int(rest) if rest.isdigit() and rest.isascii() else None


def _pid_running(pid: int) -> bool:
    """Whether process ``pid`` is running (this process counts as not: its own leftovers are
    its own to tidy). A permission refusal means it runs under another user."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _complete_bundle(path: Path) -> bool:
    """A real folder holding a bundle's ``model.onnx`` and ``card.json`` (what
    :func:`replace_folder` moves aside), not some other folder of the user's."""
    return (path.is_dir() and not path.is_symlink() and (path / ONNX_FILE).is_file()
            and (path / CARD_FILE).is_file())


def swap_target(dst: str | Path) -> Path:
    """The folder a bundle swap replaces: ``dst`` itself, or where it points when it is a
    symbolic link (``RUN/bundle -> models/current``), so that the new bundle lands in the
    link's target, built beside it on the same file system, and the link is kept."""
    dst = Path(dst)
    return Path(os.path.realpath(dst)) if dst.is_symlink() else dst


def tidy_staged(dst: str | Path) -> list[str]:
    """Tidy what an interrupted :func:`staged_bundle` left beside the bundle folder ``dst``
    (or beside its target when ``dst`` is a symbolic link, :func:`swap_target`). Only names
    ``<dst>.partial-<pid>`` / ``<dst>.old-<pid>`` (digits) whose process is no longer running
    are touched, so a running build's folder and anything else the user keeps there stay: a
    half-built ``<dst>.partial-<pid>`` is removed; a ``<dst>.old-<pid>`` (the finished bundle
    being replaced when the swap was cut short) is put back at ``dst`` when ``dst`` is missing
    (the newest), else removed; only a bundle (``model.onnx`` and ``card.json``) is either:
    any other ``.old-`` folder is left alone.
    Returns one line per thing done."""
    dst = swap_target(dst)
    done: list[str] = []
    if not dst.parent.is_dir():
        return done

    def left(suffix: str) -> list[Path]:
        found = []
        for p in dst.parent.glob(f"{dst.name}{suffix}*"):
            pid = _leftover_pid(p, dst, suffix)
            if pid is not None and not _pid_running(pid):
                found.append(p)
        return sorted(found)

    for p in left(PARTIAL_SUFFIX):
        _remove(p)
        done.append(f"removed {p}, a bundle an interrupted run left unfinished")
    backups = sorted((p for p in left(BACKUP_SUFFIX) if _complete_bundle(p)),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    if backups and not dst.exists() and not dst.is_symlink():
        backups[0].rename(dst)
        done.append(f"restored {dst} from {backups[0].name}, which an interrupted run left")
        backups = backups[1:]
    for p in backups:
        _remove(p)
        done.append(f"removed {p}, a replaced bundle an interrupted run left")
    return done


def replace_folder(src: Path, dst: Path) -> None:
    """Put the folder ``src`` at ``dst`` (a sibling: same file system) in place of whatever is
    there, by renames: ``dst`` is moved to ``<dst>.old-<pid>``, ``src`` to ``dst``, then the
    old one is removed. If the second rename fails, the old one is put back. At every moment
    ``dst`` is either the old folder or the new one (or, between the two renames, missing
    while the old one waits as ``<dst>.old-<pid>``, which :func:`tidy_staged` restores)."""
    backup = dst.with_name(f"{dst.name}{BACKUP_SUFFIX}{os.getpid()}")
    if backup.exists():
        _remove(backup)
    moved = False
    try:
        if dst.exists() or dst.is_symlink():
            dst.rename(backup)
            moved = True
        src.rename(dst)
    except BaseException:
        if moved and not dst.exists():
            backup.rename(dst)
        raise
    if moved:
        _remove(backup)


@contextmanager
def staged_bundle(dst: str | Path,
                  note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Build the bundle for ``dst`` in a fresh sibling folder ``<dst>.partial-<pid>`` (yielded)
    and, when the block ends without an exception, put it at ``dst`` in one rename
    (:func:`replace_folder`). On any exception, Ctrl-C included, the partial folder is removed
    and ``dst`` is left as it was: the bundle that was there, or none. Leftovers of an earlier
    interrupted run are tidied first (:func:`tidy_staged`; ``note`` is told each line it
    says). Two runs must not build the same
    ``dst`` at once. When ``dst`` is a symbolic link the swap happens at its target and the
    link is kept (:func:`swap_target`)."""
    dst = swap_target(dst)
    for line in tidy_staged(dst):
        if note is not None:
            note(line)
    stage = dst.with_name(f"{dst.name}{PARTIAL_SUFFIX}{os.getpid()}")
    stage.mkdir(parents=True)
    try:
        yield stage
        replace_folder(stage, dst)
    except BaseException:
        _remove(stage)
        raise

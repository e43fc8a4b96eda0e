"""The model bundle: a folder with ``model.onnx`` + ``card.json`` (+ optional ``gate.npz``,
``report.html``). The card carries everything needed to use the model correctly: classes,
preprocessing, metadata layout, temperature, risk thresholds, the out-of-distribution gate and the
honest test metrics. Loading checks the schema version and the ONNX file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import taxonomy
from dermsight.preprocess import InputSpec, MetaSpec

SCHEMA_VERSION = 1
CARD_FILE = "card.json"
ONNX_FILE = "model.onnx"
GATE_FILE = "gate.npz"
REPORT_FILE = "report.html"


class BundleError(Exception):
    """A bundle that is missing, unreadable, incompatible or tampered with."""


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
class Thresholds:
    """Cut-offs on the calibrated malignant probability (MEL + BCC + SCC)."""

    refer: float  # >= refer -> "high" (refer to a dermatologist)
    monitor: float  # monitor <= p < refer -> "moderate"; below -> "low"

    def tier(self, p_malignant: float) -> str:
        if p_malignant >= self.refer:
            return "high"
        if p_malignant >= self.monitor:
            return "moderate"
        return "low"


@dataclass
class Card:
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

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "classes": self.classes,
            "class_names": {c: taxonomy.BY_CODE[c].name for c in self.classes},
            "input_spec": self.input_spec.to_dict(),
            "meta_spec": self.meta_spec.to_dict(),
            "temperature": self.temperature,
            "thresholds": {"refer": self.thresholds.refer, "monitor": self.thresholds.monitor},
            "onnx": {"file": ONNX_FILE, "sha256": self.onnx_sha256, "outputs": self.outputs},
            "gate": self.gate,
        }
        d.update(self.extra)
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
            classes = list(d["classes"])
            unknown = [c for c in classes if c not in taxonomy.BY_CODE]
            if unknown:
                raise BundleError(f"card lists unknown classes {unknown}")
            known = {
                "schema_version", "name", "version", "classes", "class_names", "input_spec",
                "meta_spec", "temperature", "thresholds", "onnx", "gate",
            }
            return cls(
                name=str(d["name"]),
                version=str(d["version"]),
                classes=classes,
                input_spec=InputSpec.from_dict(d["input_spec"]),
                meta_spec=MetaSpec.from_dict(d["meta_spec"]),
                temperature=float(d["temperature"]),
                thresholds=Thresholds(
                    refer=float(d["thresholds"]["refer"]),
                    monitor=float(d["thresholds"]["monitor"]),
                ),
                onnx_sha256=str(d["onnx"]["sha256"]),
                outputs=dict(d["onnx"].get("outputs", {})),
                gate=dict(d.get("gate", {})),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"card.json is missing or has a bad field: {exc}") from exc


@dataclass
class Bundle:
    path: Path
    card: Card
    gate_arrays: dict[str, np.ndarray]

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def report_path(self) -> Path | None:
        p = self.path / REPORT_FILE
        return p if p.exists() else None


def load_bundle(path: str | Path | None = None, verify: bool = True) -> Bundle:
    """Load and validate a bundle folder (the shipped default when ``path`` is None)."""
    root = Path(path) if path is not None else default_bundle_path()
    if not root.exists():
        raise BundleError(f"model bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"model bundle must be a folder with {ONNX_FILE} and {CARD_FILE}: {root}")
    card_path, onnx_path = root / CARD_FILE, root / ONNX_FILE
    if not card_path.exists():
        raise BundleError(f"{root} is not a dermsight bundle: no {CARD_FILE}")
    if not onnx_path.exists():
        raise BundleError(f"{root} is not a dermsight bundle: no {ONNX_FILE}")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {card_path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{card_path} must hold a JSON object")
    card = Card.from_dict(raw)
    if verify:
        actual = sha256_file(onnx_path)
        if actual != card.onnx_sha256:
            raise BundleError(
                f"{onnx_path} does not match its card (sha256 {actual[:12]}… != "
                f"{card.onnx_sha256[:12]}…): the file was changed or corrupted"
            )
    gate_arrays: dict[str, np.ndarray] = {}
    gate_path = root / GATE_FILE
    if gate_path.exists():
        with np.load(gate_path) as z:
            # float16 on disk (half the size); float32 in memory so no request pays a conversion
            gate_arrays = {k: z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]
                           for k in z.files}
    return Bundle(path=root, card=card, gate_arrays=gate_arrays)


def save_bundle(
    out: str | Path,
    onnx_bytes_or_path: bytes | Path,
    card: Card,
    gate_arrays: dict[str, np.ndarray] | None = None,
    report_html: str | None = None,
) -> Path:
    """Write a bundle folder; the card's sha256 is set from the ONNX file actually written."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = root / ONNX_FILE
    if isinstance(onnx_bytes_or_path, bytes):
        onnx_path.write_bytes(onnx_bytes_or_path)
    elif Path(onnx_bytes_or_path).resolve() != onnx_path.resolve():
        onnx_path.write_bytes(Path(onnx_bytes_or_path).read_bytes())
    card.onnx_sha256 = sha256_file(onnx_path)
    (root / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    if gate_arrays:
        np.savez(root / GATE_FILE, **gate_arrays)  # type: ignore[arg-type]
    if report_html is not None:
        (root / REPORT_FILE).write_text(report_html, encoding="utf-8")
    return root

"""The typed model of a bundle's ``card.json`` (pydantic): what a card must hold, checked on load.

``card.json`` stays one flat JSON object (schema version 1: cards written before this model
still load; a card without ``malignant`` gets the taxonomy's). Besides its identity (schema
version, name, version) and the integrity manifest (``files``), its keys fall in two sections:

* the **runtime** section (:class:`CardRuntime`): everything the serving path reads — classes, the
  malignant set, input and metadata layout, temperature, risk thresholds, the decision rule, the
  gate (with its quality thresholds) and the ONNX file. Every field is typed and checked; a
  missing or mistyped value is a :class:`CardError` that names the field.
* the **report** section (:class:`CardReport`): what a person reads — metrics, baseline, training,
  data, cross-source rows, natural frequencies, intended use, limitations, licence, plots. Only
  the outer type of the known keys is checked; keys it does not know are kept as they are, so
  tools that add sections (``reference``, ...) do not break loading.

:class:`CardDocument` is the whole file (both sections plus identity and the integrity manifest);
``card_json_schema`` exports its JSON Schema (``dermsight bundle schema``), from which the front
end's TypeScript types are generated (``frontend/src/generated/card.ts``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from dermsight import taxonomy
from dermsight.decision import DecisionRule, LocalUpdate
from dermsight.errors import DermsightError
from dermsight.preprocess import InputSpec, MetaSpec

SCHEMA_VERSION = 1
#: the JSON Schema's ``$id``-like title (the front end's generated type is named after it)
SCHEMA_TITLE = "ModelCard"

Interpolation = Literal["bicubic", "bilinear", "nearest", "lanczos"]
Crop = Literal["center_square", "none"]
ColorConstancy = Literal["none", "shades_of_gray"]
RuleName = Literal["argmax", "logit_adjusted"]

_STRICT = ConfigDict(extra="forbid")


class CardError(DermsightError, ValueError):
    """A card that does not match the schema; ``str()`` is one line naming the field."""


@pydantic_dataclass(config=_STRICT)
class Thresholds:
    """Cut-offs on the calibrated malignant probability: the card's malignant classes summed,
    as a share of the classes not in ``malignant_excluded`` (``sum(malignant) / (1 -
    sum(excluded))``, :mod:`dermsight.malignancy`); for the shipped nine-class model
    (MEL+BCC+SCC)/(1 − P(UNK)), so that UNK never lowers the risk."""

    refer: float = Field(ge=0, le=1, description='>= refer: "high" (refer to a dermatologist)')
    monitor: float = Field(ge=0, le=1, description='monitor <= p < refer: "moderate"; below: "low"')

    def __post_init__(self) -> None:
        if self.monitor > self.refer:
            raise ValueError(f"monitor ({self.monitor:g}) must not exceed refer ({self.refer:g})")

    def tier(self, p_malignant: float) -> str:
        if p_malignant >= self.refer:
            return "high"
        if p_malignant >= self.monitor:
            return "moderate"
        return "low"


class InputSpecCard(BaseModel):
    """How an image becomes the network's input (``preprocess.InputSpec``)."""

    model_config = _STRICT
    size: int = Field(ge=8, le=4096, description="side of the square input, pixels")
    mean: list[float] = Field(min_length=3, max_length=3, description="per RGB channel")
    std: list[float] = Field(min_length=3, max_length=3, description="per RGB channel")
    interpolation: Interpolation = "bicubic"
    crop: Crop = Field(default="center_square",
                       description="center_square: crop the short side; none: squash")
    crop_fraction: float = Field(default=1.0, ge=0.3, le=1.0,
                                 description="the network sees (and training crops inside) the "
                                             "centre crop_fraction of each side of that view")
    color_constancy: ColorConstancy = "none"
    cc_power: float = Field(default=6.0, gt=0, description="Minkowski norm of Shades of Gray")

    @model_validator(mode="after")
    def _positive_std(self) -> InputSpecCard:
        if min(self.std) <= 0:
            raise ValueError("std must be positive")
        return self

    def to_spec(self) -> InputSpec:
        return InputSpec(**{**self.model_dump(), "mean": tuple(self.mean),
                            "std": tuple(self.std)})


class MetaSpecCard(BaseModel):
    """Layout of the metadata vector (``preprocess.MetaSpec``)."""

    model_config = _STRICT
    sexes: list[str] = Field(min_length=1)
    sites: list[str] = Field(min_length=1)
    age_scale: float = Field(default=100.0, gt=0)
    fields: list[str] = Field(default_factory=lambda: ["age", "sex", "site"])
    dim: int | None = Field(default=None,
                            description="length of the vector (checked against the lists)")

    def to_spec(self) -> MetaSpec:
        return MetaSpec(sexes=tuple(self.sexes), sites=tuple(self.sites),
                        age_scale=self.age_scale, fields=tuple(self.fields))

    @model_validator(mode="after")
    def _dim_agrees(self) -> MetaSpecCard:
        if self.dim is not None and self.dim != self.to_spec().dim:
            raise ValueError(f"dim {self.dim} disagrees with the listed sexes and sites "
                             f"({self.to_spec().dim})")
        return self


class LocalUpdateCard(BaseModel):
    """A clinic's local update of the suggested class (``decision.LocalUpdate``, written by
    ``dermsight bundle adapt``)."""

    model_config = _STRICT
    classes: list[str] = Field(min_length=2, description="the classes it re-decides among")
    weights: list[list[float]] = Field(
        description="one row per class of `classes`, one column per model class (on log p)")
    bias: list[float]
    name: str = Field(min_length=1, max_length=200, description="whose labelled cases")
    n_images: int = Field(ge=1, description="labelled cases it was fitted on")
    created: str
    evaluation: dict[str, Any] | None = Field(
        default=None, description="its cross-fitted figures on those cases (written, not read)")
    kept: list[str] = Field(default_factory=list,
                            description="suggestions of these classes are never changed by it")

    @model_validator(mode="after")
    def _shapes_agree(self) -> LocalUpdateCard:
        self.to_update()  # LocalUpdate checks its classes and shapes (ValueError)
        return self

    def to_update(self) -> LocalUpdate:
        return LocalUpdate.from_dict(self.model_dump())


class DecisionCard(BaseModel):
    """How the suggested class is chosen (``decision.DecisionRule``)."""

    model_config = _STRICT
    rule: RuleName = "argmax"
    tau: float = Field(default=0.0, ge=0)
    prior: dict[str, float] | None = Field(default=None, description="training class frequencies")
    margins: dict[str, Annotated[float, Field(gt=0, le=20)]] | None = Field(
        default=None, description="lead in adjusted log-probability (natural log) a class needs "
                                  "to be named (fitted on validation)")
    description: str | None = Field(default=None,
                                    description="the rule in words (written, not read)")
    local_update: LocalUpdateCard | None = Field(
        default=None, description="a clinic's local update, applied after the rule")

    @model_validator(mode="after")
    def _margins_name_classes(self) -> DecisionCard:
        if self.margins and self.prior:
            stray = sorted(set(self.margins) - set(self.prior))
            if stray:
                raise ValueError(f"margins name classes without a prior: {stray}")
        return self

    def to_rule(self) -> DecisionRule:
        return DecisionRule(rule=self.rule, tau=self.tau, prior=self.prior, margins=self.margins,
                            local=None if self.local_update is None
                            else self.local_update.to_update())


class QualityCard(BaseModel):
    """Image quality thresholds of the gate (``gate.DEFAULT_GATE`` fills what is missing)."""

    model_config = _STRICT
    min_side: float | None = None
    dark_mean: float | None = None
    bright_mean: float | None = None
    min_std: float | None = None
    max_clipped: float | None = None
    min_sharpness: float | None = None
    max_sharpness: float | None = None
    min_coloured: float | None = Field(
        default=None, description="images with fewer coloured pixels than this share are "
        "black-and-white: 'greyscale', blocking (0: never)")
    flag_jpeg_quality: float | None = Field(
        default=None, description="JPEG uploads at or below this estimated quality get the "
        "non-blocking 'compressed' flag (0: never)")
    flag_lossy_webp: float | None = Field(
        default=None, description="1: every lossy WebP upload gets the 'compressed' flag")


class GateCard(BaseModel):
    """The "cannot assess" gate. Typed: the values the gate reads; other keys (how it was fitted,
    its evaluation) are kept for the report."""

    model_config = ConfigDict(extra="allow")
    ood_threshold: float | None = Field(default=None,
                                        description="gate v1: kNN score above it blocks")
    ood_method: str | None = None
    v2_threshold: float | None = Field(default=None, description="gate v2: logit above it blocks")
    v2_clinical_threshold: float | None = Field(
        default=None, description="gate v2: clinical-photo head logit above it flags")
    v2_recoloured_threshold: float | None = Field(
        default=None, description="gate v2: recoloured-image head logit above it blocks "
                                  "('recoloured')")
    quality: QualityCard | None = None


class OnnxCard(BaseModel):
    model_config = ConfigDict(extra="allow")
    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^([0-9a-f]{64})?$")
    outputs: dict[str, str] = Field(default_factory=dict, description="output name -> meaning")


class CardRuntime(BaseModel):
    """The runtime section: every value the serving path uses."""

    classes: list[str] = Field(min_length=1, description="class codes in network output order")
    malignant: list[str] | None = Field(
        default=None, description="classes summed into the malignant probability (absent: the "
                                  "taxonomy's malignant classes among `classes`)")
    malignant_excluded: list[str] = Field(
        default_factory=list,
        description="classes left out of the malignant probability's denominator: it is then the "
                    "malignant classes' share of the other classes (e.g. [UNK]: a class learned "
                    "from one collection may name a lesion but not lower its risk)")
    input_spec: InputSpecCard
    meta_spec: MetaSpecCard
    temperature: float = Field(gt=0, description="divides the logits before the softmax")
    thresholds: Thresholds
    decision: DecisionCard | None = None
    gate: GateCard = Field(default_factory=lambda: GateCard())
    onnx: OnnxCard

    @model_validator(mode="after")
    def _classes_known(self) -> CardRuntime:
        unknown = [c for c in self.classes if c not in taxonomy.BY_CODE]
        if unknown:
            raise ValueError(f"field 'classes': unknown class codes {unknown}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("field 'classes': a class is listed twice")
        if self.malignant is not None:
            if not self.malignant:
                raise ValueError("field 'malignant': must name at least one class")
            stray = [c for c in self.malignant if c not in self.classes]
            if stray:
                raise ValueError(f"field 'malignant': {stray} are not among the classes")
        self._check_excluded()
        self._check_local_update()
        return self

    def _check_local_update(self) -> None:
        local = self.decision.local_update if self.decision else None
        if local is None:
            return
        stray = [c for c in (*local.classes, *local.kept) if c not in self.classes]
        if stray:
            raise ValueError(f"field 'decision.local_update': {stray} are not among the classes")
        if len(local.weights[0]) != len(self.classes):
            raise ValueError("field 'decision.local_update': its weight rows need one column "
                             f"per class ({len(self.classes)})")

    def _check_excluded(self) -> None:
        excluded = self.malignant_excluded
        stray = [c for c in excluded if c not in self.classes]
        if stray:
            raise ValueError(f"field 'malignant_excluded': {stray} are not among the classes")
        malignant = self.malignant if self.malignant is not None else default_malignant(
            self.classes)
        both = [c for c in excluded if c in malignant]
        if both:
            raise ValueError(f"field 'malignant_excluded': {both} are malignant classes")
        if excluded and len(set(excluded)) >= len(self.classes) - len(malignant):
            raise ValueError("field 'malignant_excluded' leaves no benign class")


class CardReport(BaseModel):
    """The report section: what a person reads. Unknown keys are kept as they are."""

    model_config = ConfigDict(extra="allow")
    created: str | None = None
    status: str | None = Field(default=None,
                               description='"trained", or why the model is a placeholder')
    intended_use: str | None = None
    limitations: list[str] | None = None
    licence: dict[str, str] | None = None
    plots: list[str] | None = None
    metrics: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    cross_source: dict[str, Any] | None = None
    natural_frequencies: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None


class CardIdentity(BaseModel):
    """Which model this is."""

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    version: str
    class_names: dict[str, str] | None = None


class CardDocument(CardReport, CardRuntime, CardIdentity):
    """The whole ``card.json``: identity, the runtime and report sections, the manifest."""

    model_config = ConfigDict(extra="allow", title=SCHEMA_TITLE, json_schema_extra={
        "x-sections": {
            "identity": list(CardIdentity.model_fields),
            "runtime": list(CardRuntime.model_fields),
            "report": list(CardReport.model_fields),
        },
    })
    files: dict[str, str] = Field(default_factory=dict,
                                  description="integrity manifest: relative path -> sha256")


#: the top-level keys of the runtime section (and identity/manifest keys the Card holds itself)
RUNTIME_KEYS: frozenset[str] = frozenset(CardRuntime.model_fields) | frozenset(
    CardIdentity.model_fields) | {"files"}


def _describe(error: Any) -> str:
    """One pydantic error as ``field 'a.b': what is wrong (got ...)``."""
    loc = ".".join(str(p) for p in error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    scalar = not isinstance(error.get("input"), dict)
    got = f" (got {error['input']!r:.40})" if loc and scalar and error["type"] != "missing" else ""
    return f"field '{loc}': {msg}{got}" if loc else msg


def validate_card(d: dict[str, Any]) -> CardDocument:
    """``d`` checked against the schema; :class:`CardError` (one line, naming the first bad field
    and how many more there are) otherwise."""
    try:
        return CardDocument.model_validate(d)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CardError(f"{_describe(errors[0])}{more}") from None


def default_malignant(classes: list[str]) -> list[str]:
    """The taxonomy's malignant classes among ``classes`` (what a new card records)."""
    return [c for c in classes if c in taxonomy.MALIGNANT]


def gate_config(gate: GateCard, raw: dict[str, Any]) -> dict[str, Any]:
    """The gate as the runtime reads it: the card's keys with the typed values checked above;
    a key written as ``null`` is left out (the gate treats it as absent)."""
    typed = gate.model_dump(include=set(GateCard.model_fields), exclude_unset=True,
                            exclude_none=True)
    return {**{k: v for k, v in raw.items() if v is not None}, **typed}


def card_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``card.json`` (what ``dermsight bundle schema`` prints)."""
    return CardDocument.model_json_schema(mode="validation")

"""Similar labelled cases: cosine k-nearest neighbours over the model's own pooled features.

Two layers, both numpy only (serving path):

* the generic kNN (:func:`normalize`, :func:`knn`): any bank of embeddings, one row per image,
  L2-normalised once when the bank is built; a query is normalised and compared by a dot
  product (= cosine similarity). The clinic's own confirmed cases reuse it with their bank.
* the bundle's reference set (:class:`ReferenceSet`, ``reference/`` in a model bundle): training
  images with a diagnosis, a small WebP thumbnail, their embedding by the shipped model and a
  licence + attribution per image (``reference/credits.json``). Built by
  ``dermsight reference build`` (``dermsight.reference_build``).

These are images that look alike *to the model*: a visual aid beside a result, not a diagnosis
and not a second opinion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.bundle import REFERENCE_DIR, BundleError, npz_arrays, npz_shapes

#: the files of the reference set, in a bundle's ``REFERENCE_DIR`` (all in its manifest)
REFERENCE_NPZ = f"{REFERENCE_DIR}/reference.npz"
REFERENCE_CREDITS = f"{REFERENCE_DIR}/credits.json"
#: the arrays ``reference.npz`` holds
ARRAYS = ("embedding", "image_id", "diagnosis", "dataset", "thumb_data", "thumb_offset")


class ReferenceError(BundleError):
    """A reference set that is unreadable, missing pieces or does not fit the model."""


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (an all-zero row stays zero)."""
    a = np.asarray(x, np.float32)
    if a.ndim == 1:
        a = a[None]
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, 1e-12)


def knn(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar rows of ``bank`` for each query row.

    ``query``: (D,) or (Q, D), any scale (normalised here). ``bank``: (N, D), rows already
    L2-normalised (:func:`normalize`; float16 or float32). Returns ``(indices, similarities)``,
    both (Q, min(k, N)), most similar first; similarities are cosines in [-1, 1]. Ties keep the
    lower bank index first, so the answer is deterministic.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q = normalize(query)
    b = np.asarray(bank)
    if b.ndim != 2 or b.shape[1] != q.shape[1]:
        raise ValueError(f"bank of shape {b.shape} does not fit queries of width {q.shape[1]}")
    n = b.shape[0]
    if n == 0:
        empty = np.zeros((q.shape[0], 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    sims = q @ b.T.astype(np.float32, copy=False)
    k = min(k, n)
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else \
        np.broadcast_to(np.arange(n), sims.shape)
    top = np.take_along_axis(sims, part, axis=1)
    # sort the k by similarity (descending), then by index for ties
    order = np.lexsort((part, -top), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(sims, idx, axis=1)


@dataclass(frozen=True)
class SimilarCase:
    """One neighbour of a query image."""

    image_id: str
    diagnosis: str  # class code
    similarity: float  # cosine of the model's pooled features, -1..1
    thumbnail: str  # a reference the caller resolves: for the bundle set, the image id
    source: str  # "reference" (the bundle's set) or "clinic" (a clinic's own cases)
    licence: str
    attribution: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReferenceSet:
    """The bundle's reference images: embeddings (L2-normalised), labels, thumbnails, credits."""

    embedding: np.ndarray  # (N, D) float32, unit rows
    image_id: np.ndarray  # (N,) str
    diagnosis: np.ndarray  # (N,) str
    dataset: np.ndarray  # (N,) int: row of ``datasets``
    datasets: list[dict[str, str]]  # name, licence, licence_url, attribution
    thumb_data: np.ndarray  # (B,) uint8: every thumbnail's bytes, one after the other
    thumb_offset: np.ndarray  # (N + 1,) int64: thumbnail i is thumb_data[off[i]:off[i + 1]]
    thumb_type: str = "image/webp"

    def __post_init__(self) -> None:
        self._row = {str(i): r for r, i in enumerate(self.image_id)}

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    @classmethod
    def check(cls, bundle_dir: str | Path) -> tuple[int, int] | None:
        """Check a bundle folder's reference set without reading its embeddings or thumbnails
        (quick enough for every bundle load): the shape of its embeddings, None when the bundle
        has none, ``ReferenceError`` naming the problem (:func:`_survey`)."""
        found = _survey(Path(bundle_dir))
        return None if found is None else found[2]

    @classmethod
    def load(cls, bundle_dir: str | Path) -> ReferenceSet | None:
        """The reference set of a bundle folder, or None when the bundle has none. The files'
        hashes are checked by ``bundle.load_bundle`` (they are in its manifest)."""
        root = Path(bundle_dir)
        found = _survey(root)
        if found is None:
            return None
        datasets, thumb_type, _ = found
        try:
            arrays = npz_arrays(root / REFERENCE_NPZ, ARRAYS)
        except ValueError as exc:
            raise _unreadable(root / REFERENCE_NPZ, exc) from exc
        return cls(
            embedding=normalize(arrays["embedding"]),
            image_id=arrays["image_id"].astype(str),
            diagnosis=arrays["diagnosis"].astype(str),
            dataset=arrays["dataset"].astype(np.int64),
            datasets=datasets,
            thumb_data=arrays["thumb_data"],
            thumb_offset=arrays["thumb_offset"].astype(np.int64),
            thumb_type=thumb_type,
        )

    def thumbnail(self, image_id: str) -> bytes | None:
        """The thumbnail bytes of one reference image (None for an unknown id)."""
        r = self._row.get(image_id)
        if r is None:
            return None
        return self.thumb_data[self.thumb_offset[r] : self.thumb_offset[r + 1]].tobytes()

    def case(self, row: int, similarity: float) -> SimilarCase:
        ds = self.datasets[int(self.dataset[row])]
        return SimilarCase(
            image_id=str(self.image_id[row]),
            diagnosis=str(self.diagnosis[row]),
            similarity=float(similarity),
            thumbnail=str(self.image_id[row]),
            source="reference",
            licence=ds["licence"],
            attribution=ds["attribution"],
        )

    def nearest(self, embedding: np.ndarray, k: int = 5) -> list[SimilarCase]:
        """The ``k`` reference images most similar to one pooled embedding, most similar first."""
        idx, sims = knn(embedding, self.embedding, k)
        return [self.case(int(r), float(s)) for r, s in zip(idx[0], sims[0], strict=True)]


def _unreadable(path: Path, why: object) -> ReferenceError:
    return ReferenceError(f"reference set unreadable: {path}: {why}")


def _read_credits(path: Path) -> tuple[list[dict[str, str]], str]:
    """``credits.json``: every dataset (with its licence and attribution), the thumbnails'
    type."""
    try:
        credits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 or not JSON
        raise _unreadable(path, exc) from exc
    raw = credits.get("datasets") if isinstance(credits, dict) else None
    if not isinstance(raw, list) or not all(
            isinstance(d, dict) and all(isinstance(d.get(k), str) for k in ("licence",
                                                                           "attribution"))
            for d in raw):
        raise _unreadable(path, "no 'datasets' list with a licence and attribution for each")
    return [dict(d) for d in raw], str(credits.get("thumbnail_type", "image/webp"))


def _survey(root: Path) -> tuple[list[dict[str, str]], str, tuple[int, int]] | None:
    """What :meth:`ReferenceSet.check` checks, from the credits, the ``.npy`` headers and the
    small ``dataset`` array: both files readable, every array present, their lengths lined up,
    every image's dataset in the credits. The datasets, the thumbnails' type and the shape of
    the embeddings; None when the bundle has no reference set."""
    npz = root / REFERENCE_NPZ
    if not npz.exists():
        return None
    datasets, thumb_type = _read_credits(root / REFERENCE_CREDITS)
    try:
        shapes = npz_shapes(npz)
        missing = [k for k in ARRAYS if k not in shapes]
        if missing:
            raise ValueError(f"no array {', '.join(map(repr, missing))}")
        dataset = npz_arrays(npz, ["dataset"])["dataset"]
    except ValueError as exc:
        raise _unreadable(npz, exc) from exc
    emb = shapes["embedding"]
    n = emb[0] if len(emb) == 2 else -1
    if n < 0 or any(shapes[k] != (n,) for k in ("image_id", "diagnosis", "dataset")) or \
            shapes["thumb_offset"] != (n + 1,) or len(shapes["thumb_data"]) != 1:
        raise ReferenceError(f"reference set invalid: {npz}: its arrays do not line up ("
                             + ", ".join(f"{k} {shapes[k]}" for k in ARRAYS) + ")")
    if not np.issubdtype(dataset.dtype, np.integer) or \
            (dataset.size and not 0 <= int(dataset.min()) <= int(dataset.max()) < len(datasets)):
        raise ReferenceError(f"reference set invalid: {npz}: its dataset indices do not match "
                             f"the {len(datasets)} datasets of {REFERENCE_CREDITS}")
    return datasets, thumb_type, (n, emb[1])

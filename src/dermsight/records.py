"""The record types that flow from readers to preprocessing, training, serving and batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dermsight import taxonomy


@dataclass(frozen=True)
class Metadata:
    """Patient/lesion metadata in dermsight's vocabulary; ``None`` means not given."""

    age: float | None = None
    sex: str | None = None
    site: str | None = None

    @classmethod
    def parse(cls, age: object = None, sex: object = None, site: object = None) -> Metadata:
        """Validate and normalise user or file values; raises ``taxonomy.TaxonomyError``."""
        return cls(
            age=taxonomy.normalize_age(age),
            sex=taxonomy.normalize_sex(sex),
            site=taxonomy.normalize_site(site),
        )

    def as_dict(self) -> dict[str, object]:
        return {"age": self.age, "sex": self.sex, "site": self.site}


@dataclass
class LesionRecord:
    """One lesion as a reader yields it.

    ``image`` is an RGB uint8 array (H, W, 3) or ``None`` when ``error`` says why it could not be
    read; a bad file or row never aborts a read, it becomes a record with ``error`` set.
    """

    id: str
    image: np.ndarray | None
    meta: Metadata = field(default_factory=Metadata)
    label: str | None = None
    source: str | None = None
    path: str | None = None
    group: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.image is not None

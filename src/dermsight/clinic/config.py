"""Where the clinic keeps its data: the database URL, the image folder, the retention period."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

#: a login session's whole lifetime (the cookie's max-age)
SESSION_DAYS = 7
#: a session also ends after this long without a request (``session_idle_minutes``): a clinic
#: workstation left logged in does not stay open to the next person for a week
SESSION_IDLE_MINUTES = 30
MAX_IDLE_MINUTES = SESSION_DAYS * 24 * 60


class ClinicConfigError(ValueError):
    """A storage setting that cannot be used (the CLI prints it as one line)."""


def database_url(raw: str) -> str:
    """A bare path or ``sqlite:///path`` -> SQLite; ``postgresql+psycopg://...`` -> PostgreSQL."""
    raw = raw.strip()
    if not raw:
        raise ClinicConfigError("the database URL is empty")
    if raw.startswith("sqlite:"):
        return raw
    if raw.startswith(("postgresql://", "postgres://")):
        rest = raw.split("://", 1)[1]
        return f"postgresql+psycopg://{rest}"
    if raw.startswith("postgresql+psycopg://"):
        return raw
    if "://" in raw:
        raise ClinicConfigError(
            f"unsupported database URL scheme {raw.split('://', 1)[0]!r}: use a file path, "
            "sqlite:///path or postgresql+psycopg://user@host/db")
    return f"sqlite:///{Path(raw).expanduser().resolve()}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> Path | None:
    if not is_sqlite(url) or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url.split("sqlite:///", 1)[1])


def _idle_minutes(given: int | None, env: Mapping[str, str]) -> int:
    """The flag, else ``DERMSIGHT_SESSION_IDLE_MINUTES``, else 30; 1 minute to 7 days."""
    if given is None:
        raw = env.get("DERMSIGHT_SESSION_IDLE_MINUTES", "").strip()
        if not raw:
            return SESSION_IDLE_MINUTES
        try:
            given = int(raw)
        except ValueError as exc:
            raise ClinicConfigError(
                f"DERMSIGHT_SESSION_IDLE_MINUTES={raw!r} is not a whole number of minutes"
            ) from exc
    if not 1 <= given <= MAX_IDLE_MINUTES:
        raise ClinicConfigError(f"the session idle timeout must be 1-{MAX_IDLE_MINUTES} minutes "
                                f"(7 days, a session's whole lifetime); got {given}")
    return given


def _sweep_grace_s(env: Mapping[str, str]) -> float:
    """``DERMSIGHT_CLINIC_SWEEP_GRACE_S``, else 300: a number of seconds, 0 or more."""
    raw = env.get("DERMSIGHT_CLINIC_SWEEP_GRACE_S", "").strip()
    if not raw:
        return 300.0
    try:
        grace = float(raw)
    except ValueError:
        grace = math.nan
    if not math.isfinite(grace) or grace < 0:
        raise ClinicConfigError(
            f"DERMSIGHT_CLINIC_SWEEP_GRACE_S={raw!r} must be a number of seconds, 0 or more")
    return grace


@dataclass(frozen=True)
class ClinicConfig:
    database_url: str
    #: folder (or ``s3://bucket/prefix``) holding visit images and heatmaps
    images: str
    #: visits older than this many days are purged by ``dermsight clinic purge``; None = keep
    retention_days: int | None = None
    #: unreferenced image files younger than this survive the start-up sweep (another instance
    #: may be writing a visit right now)
    sweep_grace_s: float = 300.0
    #: extra fsspec options for an ``s3://`` image store (endpoint_url, key, secret)
    storage_options: Mapping[str, object] | None = None
    #: mark the session cookie ``Secure`` on every login (``DERMSIGHT_SECURE_COOKIE``), for a
    #: TLS proxy that does not send ``X-Forwarded-Proto: https``; without it the cookie is
    #: ``Secure`` when the login request arrived over HTTPS or says so in that header
    secure_cookie: bool = False
    #: a login session ends after this many minutes without a request
    #: (``DERMSIGHT_SESSION_IDLE_MINUTES``; at most 7 days, the session's whole lifetime)
    session_idle_minutes: int = SESSION_IDLE_MINUTES

    @property
    def session_idle(self) -> timedelta:
        return timedelta(minutes=self.session_idle_minutes)

    @classmethod
    def resolve(
        cls, database: str | None = None, images: str | None = None,
        retention_days: int | None = None, env: Mapping[str, str] | None = None,
        require_images: bool = True, session_idle_minutes: int | None = None,
    ) -> ClinicConfig | None:
        """From explicit values, else ``DERMSIGHT_DATABASE_URL`` / ``DERMSIGHT_CLINIC_IMAGES`` /
        ``DERMSIGHT_RETENTION_DAYS`` / ``DERMSIGHT_SESSION_IDLE_MINUTES``. None when storage
        is off (no database given).
        ``require_images=False``: a PostgreSQL URL without an image folder is accepted (for
        commands that touch no image: ``images`` is then empty)."""
        env = os.environ if env is None else env
        raw = database or env.get("DERMSIGHT_DATABASE_URL", "").strip()
        if not raw:
            return None
        url = database_url(raw)
        folder = images or env.get("DERMSIGHT_CLINIC_IMAGES", "").strip()
        if not folder:
            path = sqlite_path(url)
            if path is None and not require_images:  # a command that touches no image
                folder = ""
            elif path is None:
                raise ClinicConfigError(
                    "a PostgreSQL database needs an image folder shared by every instance: "
                    "--images DIR (or s3://bucket/prefix) or DERMSIGHT_CLINIC_IMAGES")
            else:
                folder = str(path.with_name(path.stem + "-images"))
        if retention_days is None:
            raw_days = env.get("DERMSIGHT_RETENTION_DAYS", "").strip()
            if raw_days:
                try:
                    retention_days = int(raw_days)
                except ValueError as exc:
                    raise ClinicConfigError(
                        f"DERMSIGHT_RETENTION_DAYS={raw_days!r} is not a whole number of days"
                    ) from exc
        if retention_days is not None and retention_days < 1:
            raise ClinicConfigError("the retention period must be at least 1 day")
        idle = _idle_minutes(session_idle_minutes, env)
        grace = _sweep_grace_s(env)
        secure = env.get("DERMSIGHT_SECURE_COOKIE", "").strip().lower()
        if secure not in ("", "0", "false", "no", "off", "1", "true", "yes", "on"):
            raise ClinicConfigError(f"DERMSIGHT_SECURE_COOKIE={secure!r} must be true or false")
        return cls(database_url=url, images=folder, retention_days=retention_days,
                   sweep_grace_s=grace,
                   secure_cookie=secure in ("1", "true", "yes", "on"),
                   session_idle_minutes=idle)

    def check_not_under(self, static_root: Path) -> None:
        """Images must never be served as static files."""
        if "://" in self.images:
            return
        img = Path(self.images).expanduser().resolve()
        root = static_root.resolve()
        if img == root or root in img.parents:
            raise ClinicConfigError(
                f"the clinic image folder {img} lies under the web UI's static folder: it would "
                "be served to anyone; choose another folder")

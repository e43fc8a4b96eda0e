"""The one settings object of the service: ``DERMSIGHT_*`` environment variables, overridden by
``dermsight serve``'s flags (``Settings.from_env(env, **flags)``), checked once when built.

``--model``, ``--workers``, ``--threads`` and ``--log-level`` override ``DERMSIGHT_MODEL``,
``DERMSIGHT_WORKERS``, ``DERMSIGHT_ORT_THREADS`` and ``DERMSIGHT_LOG_LEVEL``; ``--database`` and
``--images`` override ``DERMSIGHT_DATABASE_URL`` and ``DERMSIGHT_CLINIC_IMAGES``, each its own
(the command resolves them together: ``--images`` with ``DERMSIGHT_DATABASE_URL`` works).
``serve`` refuses a ``DERMSIGHT_*`` name not in ``KNOWN_VARIABLES`` but close to one (a misspelt
one), warns of any other it does not know (``unknown_variable_refusal``,
``warn_unknown_variables``; the names Kubernetes and Docker set, ``TOOL_VARIABLE``, pass without a
word), and refuses an unusable ``FORWARDED_ALLOW_IPS`` (uvicorn's). Variables:

* ``DERMSIGHT_MODEL``: model bundle folder (default: the shipped bundle).
* ``DERMSIGHT_API_TOKEN``: when set, ``/api/v1/*`` (except health and the OpenAPI docs) needs
  ``Authorization: Bearer <token>``; unset = no auth.
* ``DERMSIGHT_CORS_ORIGINS``: comma-separated allowed origins; unset = CORS off.
* ``DERMSIGHT_MAX_UPLOAD_MB`` (20): largest accepted image (a multipart upload's body), in MiB;
  any other request body may send at most 64 KiB (``middleware.MAX_SMALL_BODY_BYTES``).
* ``DERMSIGHT_MAX_IMAGE_PIXELS`` (25,000,000): largest image (width x height), from the header
  (see ``dermsight.io.decode`` for the other decoding limits).
* ``DERMSIGHT_UPLOAD_TIMEOUT_S`` (60): the body must arrive within this time (slow uploads).
* ``DERMSIGHT_MAX_INFLIGHT_MB`` (256): request-body bytes received and held in memory by all
  requests together, in MiB; a request that would go over it (by its Content-Length, or while
  its body streams in) gets a 503 with ``Retry-After`` (the last
  ``small_reserve()`` of it, 32 MiB, is kept for bodies up to ``SMALL_BODY_BYTES``, 1 MiB).
* ``DERMSIGHT_MAX_CONNECTIONS`` (100, at least 2): open connections (the new one included) or
  running requests; at the limit the server answers a JSON 503 with ``Retry-After``
  (``server.HeaderTimeoutProtocol`` counts the connections, ``middleware.BusyMiddleware``
  the requests and answers).
* ``DERMSIGHT_HEADER_TIMEOUT_S`` (10): a client must send a request's complete headers within this
  time, else the connection is closed (slowloris guard).
* ``DERMSIGHT_ALLOW_TTA`` (false): allow ``?tta=true`` (8x the compute per request); when off,
  such a request is refused with a 403.
* ``DERMSIGHT_ORT_THREADS`` (1): ONNX Runtime intra-op threads per inference.
* ``DERMSIGHT_BLAS_THREADS`` (1): numpy BLAS threads (the OOD gate's matmul).
* ``DERMSIGHT_WORKERS`` (cores the process may use, max 8): inferences running at the same time.
* ``DERMSIGHT_STATIC_DIR`` (``dermsight/web/static``): built front-end served at ``/``.
* ``DERMSIGHT_DATABASE_URL`` (unset = stateless): turns on clinic case storage (``docs/clinic.md``;
  with ``DERMSIGHT_CLINIC_IMAGES`` and ``DERMSIGHT_RETENTION_DAYS``, see ``clinic/config.py``).
* ``DERMSIGHT_LOG_LEVEL`` (info): debug | info | warning | error | critical, for the
  ``dermsight.web`` logger and uvicorn.
* ``DERMSIGHT_SECURE_COOKIE`` (false): clinic session cookie marked ``Secure``; checked like every
  other boolean even without clinic storage.
* Read by the decoder at import (``io/decode.py``, ``io/budget.py``) and checked here too, so
  that ``serve`` refuses an invalid one: ``DERMSIGHT_MAX_IMAGE_BYTES`` (decoder's file cap outside
  the server, in bytes), ``DERMSIGHT_MAX_DECODE_MB`` (128), ``DERMSIGHT_DECODE_MEMORY_MB`` (256).

An API token (``DERMSIGHT_API_TOKEN``) must have at least ``MIN_TOKEN_CHARS`` characters when the
server binds beyond loopback (``token_refusal``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermsight.clinic.config import ClinicConfig, ClinicConfigError
from dermsight.io.decode import MAX_PIXELS_BUILTIN
from dermsight.parallel import default_workers

#: the logger of ``serve``'s start-up lines and notices (stdout, at any log level:
#: ``server.logging_config``)
SERVE_LOGGER = "dermsight.serve"

MIB = 1024 * 1024


def megabytes(n: int) -> str:
    """``n`` bytes as the MB figure an operator set (``DERMSIGHT_MAX_UPLOAD_MB=0.5`` is "0.5 MB",
    not "0 MB"; 1.5 is not rounded up to "2 MB": a limit is never shown larger than it is)."""
    return f"{n / MIB:.3g} MB"


def too_large_detail(limit: int) -> str:
    """The one 413 wording, whichever layer refuses the upload (the body-size middleware from
    Content-Length or while streaming, the form parser on the image part). The UI reads the
    limit from "the limit is <n> MB"."""
    return f"upload too large: the limit is {megabytes(limit)} per image"
STATIC_DIR = Path(__file__).resolve().parent / "static"


class SettingsError(ValueError):
    """An environment variable or flag with a value that cannot be used."""


#: the log levels both ``logging`` and uvicorn know
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError) as exc:  # OverflowError: "inf"
        raise SettingsError(f"{name}={raw!r} is not a whole number") from exc
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if not (value > 0 and math.isfinite(value)):  # "nan", "0", "-1", "inf"
        raise SettingsError(f"{name}={raw!r} must be a positive number")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


#: the limits ``io/decode.py`` and ``io/budget.py`` read from the environment when imported (they
#: fall back to their default there): checked here so that ``serve`` refuses an invalid one
DECODER_VARIABLES = ("DERMSIGHT_MAX_IMAGE_BYTES", "DERMSIGHT_MAX_DECODE_MB",
                     "DERMSIGHT_DECODE_MEMORY_MB")

#: the shortest shared API token accepted when the server binds beyond loopback
MIN_TOKEN_CHARS = 16
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def token_refusal(host: str, token: str | None) -> str | None:
    """Why ``token`` is too weak to serve on ``host`` (one line), or None: beyond loopback a
    shared token needs ``MIN_TOKEN_CHARS`` characters (loopback accepts any)."""
    from dermsight.web.server import is_loopback

    if not token or is_loopback(host) or len(token) >= MIN_TOKEN_CHARS:
        return None
    return (f"DERMSIGHT_API_TOKEN must have at least {MIN_TOKEN_CHARS} characters to serve on "
            f"{host!r} (it has {len(token)}): make one with {MAKE_TOKEN}")


#: every ``DERMSIGHT_*`` variable the project reads: ``serve`` refuses another name close to one
#: of these (a misspelt name would otherwise be ignored without a word) and warns of any other.
#: Also those only other commands or the tests read (they may be set in the same shell): the test
#: ``test_serve_ops.py`` checks this list against the names the sources, tests and docs use.
KNOWN_VARIABLES = frozenset({
    # serve (this module, clinic/config.py, io/decode.py, io/budget.py)
    "DERMSIGHT_MODEL", "DERMSIGHT_API_TOKEN", "DERMSIGHT_CORS_ORIGINS", "DERMSIGHT_MAX_UPLOAD_MB",
    "DERMSIGHT_MAX_IMAGE_PIXELS", "DERMSIGHT_UPLOAD_TIMEOUT_S", "DERMSIGHT_MAX_INFLIGHT_MB",
    "DERMSIGHT_MAX_CONNECTIONS", "DERMSIGHT_HEADER_TIMEOUT_S", "DERMSIGHT_ALLOW_TTA",
    "DERMSIGHT_ORT_THREADS", "DERMSIGHT_BLAS_THREADS", "DERMSIGHT_WORKERS",
    "DERMSIGHT_STATIC_DIR", "DERMSIGHT_LOG_LEVEL", "DERMSIGHT_SECURE_COOKIE",
    "DERMSIGHT_DATABASE_URL", "DERMSIGHT_CLINIC_IMAGES", "DERMSIGHT_RETENTION_DAYS",
    "DERMSIGHT_SESSION_IDLE_MINUTES", "DERMSIGHT_CLINIC_SWEEP_GRACE_S",
    "DERMSIGHT_MAX_IMAGE_BYTES", "DERMSIGHT_MAX_DECODE_MB", "DERMSIGHT_DECODE_MEMORY_MB",
    # the tests and the front end's tests; the front end's dev server (`npm run dev`'s /api proxy)
    "DERMSIGHT_SHARED_DATA", "DERMSIGHT_PG_BIN", "DERMSIGHT_CHROMIUM", "DERMSIGHT_E2E_MODEL",
    "DERMSIGHT_E2E_STATIC_DIR", "DERMSIGHT_TEST_OUTPUT", "DERMSIGHT_API",
})

#: the names deployment tools set, which dermsight never reads and ``serve`` passes over without a
#: word: Kubernetes' service links for a Service named ``dermsight`` or ``dermsight-<anything>``
#: (``DERMSIGHT_SERVICE_HOST``, ``DERMSIGHT_SERVICE_PORT``, ``DERMSIGHT_SERVICE_PORT_<PORT NAME>``,
#: ``DERMSIGHT_PORT``, ``DERMSIGHT_PORT_8000_TCP``, ``..._TCP_PROTO``, ``..._TCP_PORT``,
#: ``..._TCP_ADDR``; UDP and SCTP alike; ``DERMSIGHT_DB_SERVICE_HOST`` for ``dermsight-db``) and
#: Docker's legacy links to a container linked as ``dermsight`` (``DERMSIGHT_PORT...``,
#: ``DERMSIGHT_NAME``, and ``DERMSIGHT_ENV_PATH`` and the like: one per variable of that container)
TOOL_VARIABLE = re.compile(
    r"DERMSIGHT_(?:\w+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)?)"
    r"|DERMSIGHT_(?:NAME|ENV_\w+)")


def _closest_known(name: str) -> str | None:
    """The known variable ``name`` looks like a misspelling of (``difflib``, compared without the
    prefix all share, else any name looks close to some known one), or None."""
    import difflib

    suffixes = sorted(known.removeprefix("DERMSIGHT_") for known in KNOWN_VARIABLES)
    close = difflib.get_close_matches(name.removeprefix("DERMSIGHT_"), suffixes, n=1,
                                      cutoff=0.6)
    return f"DERMSIGHT_{close[0]}" if close else None


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    """The ``DERMSIGHT_*`` names of ``env`` dermsight does not read, less those a deployment
    tool sets (``TOOL_VARIABLE``), sorted."""
    return sorted(name for name in env if name.startswith("DERMSIGHT_")
                  and name not in KNOWN_VARIABLES and not TOOL_VARIABLE.fullmatch(name))


def unknown_variable_refusal(env: Mapping[str, str]) -> str | None:
    """One line naming a ``DERMSIGHT_*`` variable of ``env`` that is not in ``KNOWN_VARIABLES``
    but close to one (a misspelt setting: ``SESION`` for ``SESSION``), and the known name it
    looks like, or None. An unknown name close to none (``warn_unknown_variables``) and the
    names deployment tools set (``TOOL_VARIABLE``) are not refused: a Kubernetes Service named
    ``dermsight`` would otherwise stop every start (a restart loop)."""
    for name in _unknown_variables(env):
        if (close := _closest_known(name)) is not None:
            return (f"unknown environment variable {name}: did you mean {close}? (dermsight "
                    "reads no variable of that name; unset it or correct its name: README, "
                    "\"Security and limits\")")
    return None


def warn_unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """Log one warning (``dermsight.serve``'s start-up lines) for each ``DERMSIGHT_*`` name of
    ``env`` (default ``os.environ``) that dermsight does not read and that is close to no known
    one (``unknown_variable_refusal`` refuses those that are); the names, sorted."""
    env = os.environ if env is None else env
    names = [name for name in _unknown_variables(env) if _closest_known(name) is None]
    for name in names:
        logging.getLogger(SERVE_LOGGER).warning(
            "%s is not a dermsight setting: ignored (unset it, or correct its name if it was "
            "meant as one: README, \"Security and limits\")", name)
    return names


def forwarded_ips_refusal(env: Mapping[str, str]) -> str | None:
    """Why uvicorn's ``FORWARDED_ALLOW_IPS`` (the proxies whose ``X-Forwarded-For`` /
    ``X-Forwarded-Proto`` it believes) cannot be used (one line), or None. uvicorn takes any
    entry that is not an address or a network as a literal it compares client addresses with:
    a host name, ``10.0.0.1/24`` (host bits set) or a ``*`` among other entries would match no
    proxy, without a word. ``*`` alone (trust every client) is uvicorn's own setting."""
    import ipaddress

    raw = env.get("FORWARDED_ALLOW_IPS")
    if raw is None or raw == "*":
        return None
    for entry in (item.strip() for item in raw.split(",")):
        if not entry:
            continue
        why = None
        if entry == "*":
            why = "'*' (trust every client) works only as the whole value"
        elif "/" in entry:
            try:
                ipaddress.ip_network(entry)
            except ValueError as exc:
                why = f"{entry!r} is not a network ({exc})"
        else:
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                why = (f"{entry!r} is not an IP address (uvicorn compares addresses, not host "
                       "names)")
        if why is not None:
            return (f"FORWARDED_ALLOW_IPS: {why}: give the proxies' IP addresses or networks, "
                    "comma-separated (e.g. 10.0.0.5,10.1.0.0/24)")
    return None


def _clinic(env: Mapping[str, str]) -> ClinicConfig | None:
    try:
        return ClinicConfig.resolve(env=env)
    except ClinicConfigError as exc:
        raise SettingsError(str(exc)) from exc


#: bodies up to this size count as "small" for the in-flight budget ...
SMALL_BODY_BYTES = MIB


def small_reserve(max_inflight_bytes: int) -> int:
    """... and this last part of the budget is kept for them (32 MiB, at most an eighth)."""
    return min(32 * MIB, max_inflight_bytes // 8)


#: the default ``DERMSIGHT_WORKERS``: one per core the process may use, at most this many
MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class Settings:
    model_path: Path | None = None
    api_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 20 * MIB
    max_image_pixels: int = MAX_PIXELS_BUILTIN
    upload_timeout_s: float = 60.0
    ort_threads: int = 1
    blas_threads: int = 1
    workers: int = field(default_factory=lambda: default_workers(MAX_DEFAULT_WORKERS))
    static_dir: Path = STATIC_DIR
    log_level: str = "info"
    #: the longest accepted text form field (age / sex / site) in bytes
    max_field_bytes: int = 1024
    #: parts (files + fields) accepted in one multipart body
    max_parts: int = 16
    max_inflight_bytes: int = 256 * MIB
    max_connections: int = 100
    header_timeout_s: float = 10.0
    allow_tta: bool = False
    #: clinic case storage (``dermsight serve --database``); None = stateless
    clinic: ClinicConfig | None = None

    def __post_init__(self) -> None:
        """The checks that involve more than one value (each variable is checked as it is read)."""
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"unknown log level {self.log_level!r} (use one of "
                                f"{' | '.join(LOG_LEVELS)})")
        if self.clinic is not None:
            try:
                self.clinic.check_not_under(self.static_dir)
            except ClinicConfigError as exc:
                raise SettingsError(str(exc)) from exc
        limit = self.max_inflight_bytes
        if limit - small_reserve(limit) < self.max_body_bytes:
            raise SettingsError(
                f"DERMSIGHT_MAX_INFLIGHT_MB={limit / MIB:g} is too small for "
                f"DERMSIGHT_MAX_UPLOAD_MB={self.max_upload_bytes / MIB:g}: no upload of the "
                "maximum size could ever be accepted (give it at least 1.2x the upload cap)")

    @property
    def max_body_bytes(self) -> int:
        """Whole request body: the image cap plus room for the form fields and boundaries."""
        return self.max_upload_bytes + 64 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: object) -> Settings:
        """Settings from ``DERMSIGHT_*`` variables (``env``, default ``os.environ``); ``flags``
        (command-line options, by field name, ``None`` = not given) win over them.
        ``SettingsError`` names the variable or value that cannot be used."""
        env = os.environ if env is None else env
        model = env.get("DERMSIGHT_MODEL", "").strip()
        token = env.get("DERMSIGHT_API_TOKEN", "").strip()
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("DERMSIGHT_CORS_ORIGINS", "").split(",")
            if o.strip()
        )
        static = env.get("DERMSIGHT_STATIC_DIR", "").strip()
        values: dict[str, Any] = {
            "model_path": Path(model) if model else None,
            "api_token": token or None,
            "cors_origins": origins,
            "max_upload_bytes": int(_float(env, "DERMSIGHT_MAX_UPLOAD_MB", 20.0) * MIB),
            "max_image_pixels": _int(env, "DERMSIGHT_MAX_IMAGE_PIXELS", MAX_PIXELS_BUILTIN),
            "upload_timeout_s": _float(env, "DERMSIGHT_UPLOAD_TIMEOUT_S", 60.0),
            "ort_threads": _int(env, "DERMSIGHT_ORT_THREADS", 1),
            "blas_threads": _int(env, "DERMSIGHT_BLAS_THREADS", 1),
            "workers": _int(env, "DERMSIGHT_WORKERS", default_workers(MAX_DEFAULT_WORKERS)),
            "static_dir": Path(static) if static else STATIC_DIR,
            "log_level": env.get("DERMSIGHT_LOG_LEVEL", "").strip() or "info",
            "max_inflight_bytes": int(_float(env, "DERMSIGHT_MAX_INFLIGHT_MB", 256.0) * MIB),
            "max_connections": _int(env, "DERMSIGHT_MAX_CONNECTIONS", 100, minimum=2),
            "header_timeout_s": _float(env, "DERMSIGHT_HEADER_TIMEOUT_S", 10.0),
            "allow_tta": _bool(env, "DERMSIGHT_ALLOW_TTA", False),
        }
        _bool(env, "DERMSIGHT_SECURE_COOKIE", False)  # checked with storage off too
        for name in DECODER_VARIABLES:
            _float(env, name, 1.0)
        # the command resolves flags and variables together, field by field (``--images`` with
        # ``DERMSIGHT_DATABASE_URL``): the variables alone are resolved only without its result
        values["clinic"] = _clinic(env) if flags.get("clinic") is None else None
        unknown = set(flags) - set(cls.__dataclass_fields__)
        if unknown:  # a programming error, not a user's
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update({name: value for name, value in flags.items() if value is not None})
        values["log_level"] = str(values["log_level"]).lower()
        return cls(**values)

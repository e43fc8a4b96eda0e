"""``dermsight predict`` (score image files from the shell) and ``dermsight serve`` (HTTP API + UI).

``predict`` exit codes: 0 all images scored, 1 at least one image could not be read (the others
are still printed), 2 bad metadata / usage or a heatmap that could not be written (the results are
still printed), 3 model bundle problem, 130 Ctrl-C (the images done before it are still printed,
and stderr says the output is partial).
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dermsight.cli.data import QuietOpt
from dermsight.cli.errors import EXIT_USER, Interruption, UserError, check_threads
from dermsight.progress import counting, progress_bars
from dermsight.web.settings import MAX_DEFAULT_WORKERS

if TYPE_CHECKING:  # pragma: no cover
    from dermsight.batch.overlays import UniqueNames
    from dermsight.predict import Prediction
    from dermsight.web.settings import Settings

EXIT_BAD_INPUT = 1


def _check_heatmap(out: Path) -> None:
    """Refuse, before any scoring, a ``--heatmap`` that cannot be written: not a .png, a folder,
    or under a file / a folder it may not write to (its folder is made here)."""
    from dermsight.batch.overlays import make_folder
    from dermsight.io.files import unwritable_reason

    if out.suffix.lower() not in ("", ".png"):
        raise UserError(f"--heatmap must name a .png file, got {out}")
    if out.is_dir():
        raise UserError(f"--heatmap must name a .png file, {out} is a folder")
    if (why := make_folder(out.parent)) is not None:
        raise UserError(f"--heatmap {out}: cannot write into the folder {out.parent}: {why}")
    if (why := unwritable_reason(out, folder=False)) is not None:  # e.g. a broken link
        raise UserError(f"cannot write --heatmap {out}: {why}")


def _heatmap_path(out: Path, image: Path, names: UniqueNames | None) -> Path:
    """``out`` for a single image; else ``<out>_<image>.png``, with ``-2``, ``-3``, ... when an
    earlier image of the run had the same name (so no heatmap replaces another)."""
    if names is None:
        return out
    return out.with_name(names.claim(f"{out.stem}_{image.stem}", out.suffix or ".png"))


def _heatmap_names(heatmap: Path | None, n: int) -> UniqueNames | None:
    """The names handed to several images' heatmaps; None without ``--heatmap`` or for one
    image. Imported only then: ``dermsight.batch`` pulls in pandas and pyarrow, which
    ``predict`` does not need otherwise."""
    if heatmap is None or n <= 1:
        return None
    from dermsight.batch.overlays import UniqueNames

    return UniqueNames()


def _listen_refusal(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (one line), or None. Checked before the model
    loads: uvicorn itself would only log the error and exit 3, dermsight's code for a bad
    bundle. Binds as uvicorn does (every address of ``host``, SO_REUSEADDR, IPv6 only on
    IPv6), then lets go."""
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host!r}: {exc.strerror}"
    for family, kind, proto, _, address in addresses:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # e.g. no IPv6 here: uvicorn skips it too
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (f"port {port} on {host} is already in use: stop what uses it or "
                            "choose another --port")
                return f"cannot listen on {host} port {port}: {exc.strerror or exc}"
    return None


def _pct(p: float) -> str:
    return f"{100.0 * p:5.1f} %"


def _print_human(path: Path, pred: Prediction) -> None:
    from dermsight import taxonomy

    d = pred.to_dict(heatmap_png=False)
    if not pred.assessable:  # no class, probabilities or tier shown as if valid
        typer.echo(f"{path}: cannot assess (no result)")
        for flag in d["flags"]:
            typer.echo(f"    {'cannot assess' if flag['blocking'] else 'note'}: {flag['message']}")
        return
    # the names the UI and API use: the decision rule's class is a suggestion, and the
    # malignant figure is (MEL+BCC+SCC)/(1-UNK), not the three classes' sum
    typer.echo(
        f"{path}: suggested class {d['prediction_name']} ({d['prediction']})  "
        f"risk: {d['risk']}  malignant share among the specific diagnoses: "
        f"{_pct(d['malignant_probability']).strip()}"
    )
    # the rule may suggest another class than the most probable one: say which rule it is
    typer.echo(f"    suggested class chosen as: {d['decision_rule']}")
    top = sorted(d["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    typer.echo("    " + "   ".join(
        f"{code} {taxonomy.BY_CODE[code].name}: {_pct(p).strip()}" for code, p in top))
    for flag in d["flags"]:
        typer.echo(f"    {'cannot assess' if flag['blocking'] else 'note'}: {flag['message']}")


def _predict_file(m: Any, path: Path, meta: Any, heatmap: bool, tta: bool) -> Prediction:
    """One file (regular files only, at most the decode limit: the facade reads it); a DICOM
    file's tags fill the metadata the command line left out."""
    return m.predict(path, meta=meta, heatmap=heatmap, tta=tta)


def _once(name: str, values: list[str] | None) -> str | None:
    """The one value of a metadata option (``--age`` ...), None without one; given more than
    once it is refused (click would keep the last one silently; the API refuses it too)."""
    if values is not None and len(values) > 1:
        raise UserError(f"--{name} is given more than once: give it once (it applies to every "
                        "image of the command)")
    return values[0] if values else None


def _write_heatmap(entry: dict[str, Any], pred: Prediction, out: Path) -> bool:
    """Write ``pred``'s overlay to ``out`` and name it in ``entry``; False (said on stderr) when
    the write fails: a failed write loses no result, all are still printed, then exit 2. A
    "cannot assess" result has no heatmap: nothing is written, and stderr says so (not an
    error: the exit code is unchanged)."""
    if pred.cam is None:  # said, so a missing file is not taken for a failed write
        why = ("the image could not be assessed (see its flags)" if not pred.assessable else
               "the model gave none")
        print(f"note: {entry['file']}: no heatmap written: {why}", file=sys.stderr)
        return True
    try:
        out.write_bytes(pred.overlay_png())
    except OSError as exc:
        print(f"error: {entry['file']}: heatmap not written to {out}: {exc.strerror or exc}",
              file=sys.stderr)
        return False
    entry["heatmap_file"] = str(out)
    return True


# ruff noqa below: one parameter per command-line flag.
def predict(  # noqa: PLR0913
    # readable=False: an unreadable file is reported by the decoder, the others still scored
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG/PNG/WebP/BMP/TIFF/DICOM)",
                                                show_default=False, readable=False)],
    # lists only to refuse a repeated option (click would keep the last one silently)
    age: Annotated[list[str] | None, typer.Option(
        help="age in years (0-120); 'unknown' = not given", metavar="<str>",
        show_default=False)] = None,
    sex: Annotated[list[str] | None, typer.Option(
        help="male | female ('unknown' = not given)", metavar="<str>", show_default=False)] = None,
    site: Annotated[list[str] | None, typer.Option(
        help="anatomic site, e.g. 'posterior torso', 'head/neck', 'lower extremity', 'arm' "
             "('unknown' = not given)", metavar="<str>", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list (API fields)")] = False,
    heatmap: Annotated[Path | None, typer.Option(
        "--heatmap", help="write the heatmap overlaid on the image to this PNG (several images: "
                          "<name>_<image>.png, then <name>_<image>-2.png, ... for a repeated "
                          "image name)")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model bundle folder (default: the shipped model)")] = None,
    tta: Annotated[bool, typer.Option(
        "--tta", help="average over 8 flips/rotations (slower)")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Assess lesion images with the model. Decision support only, not a diagnosis.

    With --json and several images a progress bar counts them on stderr when it is a terminal
    (-q: none)."""
    from dermsight.io.errors import ImageDecodeError
    from dermsight.predict import DISCLAIMER, Dermsight
    from dermsight.records import Metadata

    # TaxonomyError -> exit 2
    meta = Metadata.parse(_once("age", age), _once("sex", sex), _once("site", site))
    if heatmap is not None:
        _check_heatmap(heatmap)
    m = Dermsight.load(model)  # BundleError -> exit 3
    names = _heatmap_names(heatmap, len(images))
    results: list[dict[str, Any]] = []
    failed = unwritten = 0
    stop = Interruption()
    # the JSON comes at the end: until then a bar on a terminal says how far it is (as batch's)
    bars = progress_bars(as_json and len(images) > 1 and not quiet and sys.stderr.isatty())
    # a Ctrl-C ends the loop: the results so far are still printed, then exit 130
    with stop, counting(bars, len(images), "assessing images") as done:
        for path in images:
            try:
                pred: Prediction | None = _predict_file(m, path, meta, heatmap is not None, tta)
            except ImageDecodeError as exc:
                failed += 1
                print(f"error: {path}: {exc.reason}", file=sys.stderr)
                results.append({"file": str(path), "error": exc.reason})
                pred = None
            done(1)
            if pred is None:
                continue
            entry: dict[str, Any] = {"file": str(path), **pred.to_dict(heatmap_png=False)}
            if heatmap is not None:
                unwritten += not _write_heatmap(entry, pred, _heatmap_path(heatmap, path, names))
            results.append(entry)
            if not as_json:
                _print_human(path, pred)
                if "heatmap_file" in entry:
                    typer.echo(f"    heatmap: {entry['heatmap_file']}")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    elif len(results) > failed:
        typer.echo(f"\n{DISCLAIMER}")
    stop.exit_if_caught(len(results), images, "images")
    if unwritten:
        raise SystemExit(EXIT_USER)
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


def database_shown(url: str) -> str:
    """The clinic database as the log names it: a SQLite file's absolute path (a relative
    ``--database`` is relative to the working directory, ``/`` under systemd), else the URL
    with its password masked (``***``, also a query value whose name holds "pass":
    ``?password=``, ``?sslpassword=``; a URL with an unencoded ``@`` is not shown)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from dermsight.clinic.config import sqlite_path

    path = sqlite_path(url)
    if path is not None:
        return str(path.expanduser().resolve())
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL SQLAlchemy reads: nothing of it is shown
        return "(a database URL SQLAlchemy cannot parse)"
    if parsed.host and "@" in parsed.host:  # an '@' in the password not written as %40
        return "(a database URL with an unencoded '@' in it; not shown: it may hold a password)"
    secret = [k for k in parsed.query if "pass" in k.lower()]  # ?password=, ?sslpassword=
    if secret:
        parsed = parsed.set(query={**parsed.query, **dict.fromkeys(secret, "***")})
    return parsed.render_as_string(hide_password=True)


def images_shown(images: str) -> str:
    """The clinic image store as the log names it: a local folder's absolute path, else the URL
    (``s3://bucket/prefix``) with a password in it masked."""
    from urllib.parse import urlsplit

    if "://" not in images:
        return str(Path(images).expanduser().resolve())
    parts = urlsplit(images)
    if parts.password is None:
        return images
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def _new_database_file(url: str) -> Path | None:
    """The SQLite file of ``url`` when it does not exist yet (the start creates it, empty);
    None otherwise."""
    from dermsight.clinic.config import sqlite_path

    path = sqlite_path(url)
    return None if path is None or path.exists() else path.expanduser().resolve()


def _serve_settings(
    *, model: Path | None, workers: int | None, threads: int | None, log_level: str | None,
    database: str | None, images: str | None, retention_days: int | None,
    session_idle_minutes: int | None,
) -> Settings:
    """``serve``'s settings: the ``DERMSIGHT_*`` variables with the flags (``None``: not given)
    winning field by field (``--images`` with ``DERMSIGHT_DATABASE_URL`` too). ``UserError``
    (exit 2, one line) for an unknown ``DERMSIGHT_*`` variable, an unusable
    ``FORWARDED_ALLOW_IPS`` (read by uvicorn) or an invalid value."""
    import os

    from dermsight.clinic.config import ClinicConfig, ClinicConfigError
    from dermsight.web.settings import (
        Settings,
        SettingsError,
        forwarded_ips_refusal,
        unknown_variable_refusal,
    )

    # a misspelt DERMSIGHT_* name, or a proxy list uvicorn would read as names matching nothing
    if (why := unknown_variable_refusal(os.environ) or forwarded_ips_refusal(os.environ)):
        raise UserError(why)
    try:
        clinic_flags = {"--images": images, "--retention-days": retention_days,
                        "--session-idle-minutes": session_idle_minutes}
        clinic = (ClinicConfig.resolve(database=database, images=images,
                                       retention_days=retention_days,
                                       session_idle_minutes=session_idle_minutes)
                  if database or images or retention_days or session_idle_minutes else None)
        for flag, value in clinic_flags.items():
            if value is not None and clinic is None:
                raise UserError(f"{flag} needs clinic storage: give --database URL (or set "
                                "DERMSIGHT_DATABASE_URL)")
        return Settings.from_env(model_path=model, workers=workers, ort_threads=threads,
                                 log_level=log_level, clinic=clinic)
    except (SettingsError, ClinicConfigError) as exc:
        raise UserError(str(exc)) from exc


# ruff noqa below: one parameter per command-line flag.
def serve(  # noqa: PLR0913
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8000,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model bundle folder (default: $DERMSIGHT_MODEL or the shipped model)")
    ] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1,
        help=f"inferences at the same time (default: $DERMSIGHT_WORKERS, else the CPU cores this "
             f"process may use, at most {MAX_DEFAULT_WORKERS})")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="ONNX Runtime threads per inference, at most 4 per CPU core "
                                 "or 64 (default: $DERMSIGHT_ORT_THREADS, else 1; numpy: "
                                 "$DERMSIGHT_BLAS_THREADS)")] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug | info | warning | error | critical (default: "
                             "$DERMSIGHT_LOG_LEVEL, else info)")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth",
        help="allow serving beyond loopback without DERMSIGHT_API_TOKEN (anyone on the network "
             "can use the API); beyond loopback a DERMSIGHT_API_TOKEN must have at least 16 "
             "characters")] = False,
    database: Annotated[str | None, typer.Option(
        "--database", help="turn on clinic case storage (docs/clinic.md): a file path, "
                           "sqlite:///path or postgresql+psycopg://... (default: "
                           "$DERMSIGHT_DATABASE_URL; unset = stateless)")] = None,
    images: Annotated[str | None, typer.Option(
        "--images", help="clinic image folder or s3://bucket/prefix (default: "
                         "$DERMSIGHT_CLINIC_IMAGES; SQLite: a folder beside the database)")] = None,
    retention_days: Annotated[int | None, typer.Option(
        "--retention-days", min=1,
        help="clinic storage: delete visits stored more than this many days ago, at start and "
             "then daily (default: $DERMSIGHT_RETENTION_DAYS; unset = keep)")] = None,
    session_idle_minutes: Annotated[int | None, typer.Option(
        "--session-idle-minutes", min=1, max=10080,
        help="clinic storage: a login session ends after this many minutes without a request "
             "(default: $DERMSIGHT_SESSION_IDLE_MINUTES, else 30)")] = None,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the web UI.

    Limits and settings: DERMSIGHT_* variables (README); an invalid one stops it (exit 2), as
    does an unknown (misspelt) DERMSIGHT_* name. A flag wins over its own variable only."""
    from dermsight.web.server import (
        bind_refusal,
        configure_logging,
        limit_malloc_arenas,
        serve_app,
    )
    from dermsight.web.settings import SERVE_LOGGER, token_refusal, warn_unknown_variables

    settings = _serve_settings(model=model, workers=workers, threads=threads,
                               log_level=log_level, database=database, images=images,
                               retention_days=retention_days,
                               session_idle_minutes=session_idle_minutes)
    # before the model loads (exit 2): the flag or the variable it came from is named
    check_threads(settings.ort_threads,
                  "--threads" if threads is not None else "DERMSIGHT_ORT_THREADS")
    refusal = (bind_refusal(host, settings.api_token, insecure_no_auth)
               or token_refusal(host, settings.api_token) or _listen_refusal(host, port))
    if refusal is not None:
        raise UserError(refusal)
    configure_logging(settings.log_level)  # one format for dermsight, uvicorn and alembic
    warn_unknown_variables()  # a DERMSIGHT_* name close to no known one: one line each
    limit_malloc_arenas()  # before the model load and the worker threads

    from dermsight.web.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host

    # the start-up lines: stdout, in the log's format, whatever the log level
    said = logging.getLogger(SERVE_LOGGER)
    new_file = None
    if settings.clinic is not None:  # which database, before the start can fail on it
        new_file = _new_database_file(settings.clinic.database_url)
        said.info("clinic database: %s (images: %s)",
                  database_shown(settings.clinic.database_url),
                  images_shown(settings.clinic.images))

    def announce() -> None:  # the model is loaded (a BundleError -> exit 3 comes before this)
        card = app.state.model.card
        said.info("serving %s %s at http://%s:%d/ (API docs: http://%s:%d/api/v1/docs)",
                  card.name, card.version, shown, port, shown, port)
        if settings.clinic is not None:
            if new_file is not None and new_file.exists():  # made by this start
                said.warning("created a new, empty clinic database at %s (check --database if "
                             "you expected existing records)", new_file)
            said.info("clinic storage on: log in at / (first account: dermsight clinic "
                      "create-user --role admin)")
            said.info("clinic sessions end after %d minutes without activity",
                      settings.clinic.session_idle_minutes)
            if settings.clinic.retention_days is not None:
                said.info("retention: visits stored more than %d days ago are deleted at start "
                          "and daily", settings.clinic.retention_days)
        if settings.api_token:
            said.info("API token required (DERMSIGHT_API_TOKEN is set)")
        elif insecure_no_auth:
            said.warning("no API token: anyone who can reach %s can use the API", shown)

    try:
        serve_app(app, host, port, settings, on_ready=announce)
    except SystemExit as exc:  # uvicorn's 3 (port taken since the check) is no bundle error
        from uvicorn.config import STARTUP_FAILURE

        if exc.code != STARTUP_FAILURE:
            raise
        raise UserError(f"cannot listen on {host} port {port} (uvicorn's error above)") from None


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("predict")(predict)
    app.command("serve")(serve)

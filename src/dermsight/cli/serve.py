"""``dermsight predict`` (score image files from the shell) and ``dermsight serve`` (HTTP API + UI).

``predict`` exit codes: 0 all images scored, 1 at least one image could not be read (the others
are still printed), 2 bad metadata / usage, 3 model bundle problem.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dermsight.cli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from dermsight.predict import Prediction

EXIT_BAD_INPUT = 1


def _heatmap_path(out: Path, image: Path, several: bool) -> Path:
    return out.with_name(f"{out.stem}_{image.stem}{out.suffix or '.png'}") if several else out


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
    typer.echo(
        f"{path}: {d['prediction_name']} ({d['prediction']})  risk: {d['risk']}  "
        f"malignant: {_pct(d['malignant_probability']).strip()}"
    )
    top = sorted(d["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    typer.echo("    " + "   ".join(
        f"{code} {taxonomy.BY_CODE[code].name}: {_pct(p).strip()}" for code, p in top))
    for flag in d["flags"]:
        typer.echo(f"    {'cannot assess' if flag['blocking'] else 'note'}: {flag['message']}")


def _predict_file(m: Any, path: Path, meta: Any, heatmap: bool, tta: bool) -> Prediction:
    """One file (regular files only, at most the decode limit: the facade reads it); a DICOM
    file's tags fill the metadata the command line left out."""
    return m.predict(path, meta=meta, heatmap=heatmap, tta=tta)


def predict(
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG/PNG/WebP/BMP/TIFF/DICOM)",
                                                show_default=False)],
    age: Annotated[str | None, typer.Option(help="age in years (0-120)")] = None,
    sex: Annotated[str | None, typer.Option(help="male | female")] = None,
    site: Annotated[str | None, typer.Option(
        help="anatomic site, e.g. 'posterior torso', 'head/neck', 'lower extremity'")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list (API fields)")] = False,
    heatmap: Annotated[Path | None, typer.Option(
        "--heatmap", help="write the heatmap overlaid on the image to this PNG (several images: "
                          "<name>_<image>.png)")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model bundle folder (default: the shipped model)")] = None,
    tta: Annotated[bool, typer.Option(
        "--tta", help="average over 8 flips/rotations (slower)")] = False,
) -> None:
    """Assess lesion images with the model. Decision support only, not a diagnosis."""
    from dermsight.io.errors import ImageDecodeError
    from dermsight.predict import DISCLAIMER, Dermsight
    from dermsight.records import Metadata

    meta = Metadata.parse(age=age, sex=sex, site=site)  # TaxonomyError -> exit 2
    if heatmap is not None and heatmap.suffix.lower() not in ("", ".png"):
        raise UserError(f"--heatmap must name a .png file, got {heatmap}")
    m = Dermsight.load(model)  # BundleError -> exit 3
    results: list[dict[str, Any]] = []
    failed = 0
    for path in images:
        try:
            pred = _predict_file(m, path, meta, heatmap is not None, tta)
        except ImageDecodeError as exc:
            failed += 1
            print(f"error: {path}: {exc.reason}", file=sys.stderr)
            results.append({"file": str(path), "error": exc.reason})
            continue
        entry: dict[str, Any] = {"file": str(path), **pred.to_dict(heatmap_png=False)}
        if heatmap is not None and pred.cam is not None:  # none for a "cannot assess" image
            out = _heatmap_path(heatmap, path, len(images) > 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(pred.overlay_png())
            entry["heatmap_file"] = str(out)
        results.append(entry)
        if not as_json:
            _print_human(path, pred)
            if "heatmap_file" in entry:
                typer.echo(f"    heatmap: {entry['heatmap_file']}")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    elif len(results) > failed:
        typer.echo(f"\n{DISCLAIMER}")
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


# ruff noqa below: one parameter per command-line flag.
def serve(  # noqa: PLR0913
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8000,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model bundle folder (default: $DERMSIGHT_MODEL or the shipped model)")
    ] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="inferences at the same time (default: CPU count)")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="ONNX Runtime threads per inference (default 1)")] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug | info | warning | error")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth",
        help="allow serving beyond loopback without DERMSIGHT_API_TOKEN (anyone on the network "
             "can use the API)")] = False,
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
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the web UI."""
    from dermsight.clinic.config import ClinicConfig, ClinicConfigError
    from dermsight.web.server import bind_refusal, limit_malloc_arenas, serve_app
    from dermsight.web.settings import Settings, SettingsError

    try:  # the flags win over the DERMSIGHT_* variables
        clinic_flags = {"--retention-days": retention_days,
                        "--session-idle-minutes": session_idle_minutes}
        clinic = (ClinicConfig.resolve(database=database, images=images,
                                       retention_days=retention_days,
                                       session_idle_minutes=session_idle_minutes)
                  if database or images or retention_days or session_idle_minutes else None)
        for flag, value in clinic_flags.items():
            if value is not None and clinic is None:
                raise UserError(f"{flag} needs clinic storage: give --database URL (or set "
                                "DERMSIGHT_DATABASE_URL)")
        settings = Settings.from_env(model_path=model, workers=workers, ort_threads=threads,
                                     log_level=log_level, clinic=clinic)
    except (SettingsError, ClinicConfigError) as exc:
        raise UserError(str(exc)) from exc
    refusal = bind_refusal(host, settings.api_token, insecure_no_auth)
    if refusal is not None:
        raise UserError(refusal)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    limit_malloc_arenas()  # before the model load and the worker threads

    from dermsight.web.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host

    def announce() -> None:  # the model is loaded (a BundleError -> exit 3 comes before this)
        card = app.state.model.card
        typer.echo(f"dermsight: serving {card.name} {card.version} at http://{shown}:{port}/ "
                   f"(API docs: http://{shown}:{port}/api/v1/docs)")
        if settings.clinic is not None:
            typer.echo("dermsight: clinic storage on: log in at / (first account: dermsight "
                       "clinic create-user --role admin)")
            typer.echo(f"dermsight: clinic sessions end after "
                       f"{settings.clinic.session_idle_minutes} minutes without activity")
            if settings.clinic.retention_days is not None:
                typer.echo(f"dermsight: retention: visits stored more than "
                           f"{settings.clinic.retention_days} days ago are deleted at start "
                           "and daily")
        if settings.api_token:
            typer.echo("dermsight: API token required (DERMSIGHT_API_TOKEN is set)")
        elif insecure_no_auth:
            typer.echo(f"dermsight: WARNING: no API token: anyone who can reach {shown} can use "
                       "the API")
        sys.stdout.flush()

    serve_app(app, host, port, settings, on_ready=announce)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("predict")(predict)
    app.command("serve")(serve)

"""Read a ``multipart/form-data`` upload into memory, with limits, while it streams in.

Starlette's own form parser spools files over 1 MB to a temporary *file on disk*; uploaded
lesion images must never touch the disk, so the predict route parses the body itself with
``python-multipart``'s streaming parser into a ``bytearray``:

* the image part is capped at ``Settings.max_upload_bytes`` (413), each text field at
  ``Settings.max_field_bytes`` (422), the number of parts at ``Settings.max_parts`` (422);
* the whole body must arrive within ``Settings.upload_timeout_s`` (408, slow-upload guard);
* a malformed or incomplete multipart body is a 400; a request that is not
  ``multipart/form-data`` at all is a 415;
* a form field (or query parameter) the route does not accept is a 422 that names it and the
  closest accepted name (``formnames.py``): a typo must not silently drop the patient's data.

After a 4xx found mid-body (e.g. a second image) the rest of the body is read and discarded
(it is bounded by the body cap) so that the client reliably receives the error response.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from dermsight.web.formnames import repeated_names_message, unknown_names_message
from dermsight.web.settings import Settings, too_large_detail

IMAGE_FIELD = "image"
MAX_PART_HEADER_BYTES = 8 * 1024


class UploadError(HTTPException):
    """A request the client must fix; ``detail`` is a sentence a person understands."""

    def __init__(self, status_code: int, detail: str, drain: bool = True) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.drain = drain


@dataclass
class UploadForm:
    image: bytes | None = None
    filename: str | None = None
    content_type: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _printable(text: str, limit: int = 60) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


class _Collector:
    """python-multipart callbacks that keep the image and the small text fields in memory."""

    def __init__(self, settings: Settings, charset: str) -> None:
        self.settings = settings
        self.charset = charset
        self.form = UploadForm()
        self.parts = 0
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_image = False
        self._image_filename: str | None = None
        self._image_ctype: str | None = None
        self._image: bytearray | None = None
        self._data = bytearray()

    # -- callbacks -------------------------------------------------------------------------

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.settings.max_parts:
            raise UploadError(422, f"too many form fields (limit {self.settings.max_parts})")
        self._headers = {}
        self._header_bytes = 0
        self._name = None
        self._is_image = False
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._header_value += data[start:end]

    def _grow_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadError(400, "malformed multipart body: part headers too large")

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition")
        if disposition is None:
            raise UploadError(400, "malformed multipart body: a part has no Content-Disposition")
        _, options = parse_options_header(disposition)
        raw_name = options.get(b"name")
        if raw_name is None:
            raise UploadError(400, "malformed multipart body: a part has no field name")
        name = self._decode(raw_name, "field name")
        self._name = name
        if name == IMAGE_FIELD:
            if self._image is not None:
                raise UploadError(
                    422, "send exactly one image per request (the form has several 'image' parts)"
                )
            self._is_image = True
            self._image = bytearray()
            raw_filename = options.get(b"filename")
            self._image_filename = (
                _printable(raw_filename.decode("utf-8", "replace"), 200)
                if raw_filename is not None else None
            )
            ctype = self._headers.get(b"content-type")
            self._image_ctype = ctype.decode("latin-1")[:100] if ctype else None
        elif b"filename" in options:
            raise UploadError(
                422, f"unexpected file in form field '{_printable(name)}': send the photo in a "
                f"field named '{IMAGE_FIELD}'"
            )
        elif name in self.form.fields:
            raise UploadError(422, f"form field '{_printable(name)}' is given more than once")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._is_image:
            assert self._image is not None
            if len(self._image) + n > self.settings.max_upload_bytes:
                raise UploadError(
                    413,
                    too_large_detail(self.settings.max_upload_bytes),
                    drain=False,
                )
            self._image += data[start:end]
        else:
            if len(self._data) + n > self.settings.max_field_bytes:
                raise UploadError(
                    422,
                    f"form field '{_printable(self._name or '?')}' is too long "
                    f"(limit {self.settings.max_field_bytes} bytes)",
                )
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._is_image or self._name is None:
            return
        self.form.fields[self._name] = self._decode(bytes(self._data), f"field '{self._name}'")

    def on_end(self) -> None:
        self.ended = True

    # -- helpers ---------------------------------------------------------------------------

    def _decode(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode(self.charset)
        except (UnicodeDecodeError, LookupError) as exc:
            raise UploadError(422, f"form {_printable(what)} is not valid UTF-8 text") from exc

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def result(self) -> UploadForm:
        if self._image is not None:
            self.form.image = bytes(self._image)
            self.form.filename = self._image_filename
            self.form.content_type = self._image_ctype
        return self.form


def reject_unknown(names: Iterable[str], accepted: Sequence[str], what: str) -> None:
    """422 naming every name not in ``accepted`` (``what``: "form field", "query parameter")."""
    unknown = [_printable(n) for n in dict.fromkeys(names) if n not in accepted]
    if unknown:
        raise UploadError(422, unknown_names_message(unknown, accepted, what), drain=False)


def check_query(request: Request, accepted: Sequence[str]) -> None:
    """422 for a query parameter the route does not take (e.g. ``?heatmp=false``) or one given
    more than once (``?heatmap=true&heatmap=false``: which value applies is not to be guessed)."""
    reject_unknown(request.query_params.keys(), accepted, "query parameter")
    names = [_printable(name) for name, _ in request.query_params.multi_items()]
    if (repeated := repeated_names_message(names, "query parameter")) is not None:
        raise UploadError(422, repeated, drain=False)


def check_content_type(request: Request) -> bytes:
    """The multipart boundary, or a 415 / 400 for a body that is not multipart/form-data."""
    header = request.headers.get("content-type")
    if not header:
        raise UploadError(
            415, "send the image as multipart/form-data in a field named 'image' "
            "(the request has no Content-Type)", drain=False,
        )
    ctype, params = parse_options_header(header)
    if ctype != b"multipart/form-data":
        raise UploadError(
            415, "send the image as multipart/form-data in a field named 'image' "
            f"(got {_printable(ctype.decode('latin-1'))})", drain=False,
        )
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise UploadError(400, "malformed multipart body: missing or invalid boundary",
                          drain=False)
    return boundary


async def read_upload(request: Request, settings: Settings, accepted: Sequence[str]
                      ) -> UploadForm:
    """Stream the request body through the multipart parser; everything stays in memory.
    ``accepted``: the form's field names (the image's included); any other field is a 422,
    checked once the body is read, so the limits above are reported first."""
    boundary = check_content_type(request)
    charset = "utf-8"
    collector = _Collector(settings, charset)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    except (FormParserError, ValueError) as exc:
        raise UploadError(400, "malformed multipart body: invalid boundary", drain=False) from exc

    error: UploadError | None = None
    try:
        with anyio.fail_after(settings.upload_timeout_s):
            async for chunk in request.stream():
                if error is not None:
                    continue  # discard the rest of a bounded body so the client gets the error
                if not chunk:
                    continue
                try:
                    parser.write(chunk)
                except UploadError as exc:
                    if not exc.drain:
                        raise
                    error = exc
                except FormParserError as exc:
                    error = UploadError(400, "malformed multipart body")
                    error.__cause__ = exc
    except TimeoutError as exc:
        raise UploadError(
            408, f"upload too slow: the request body must arrive within "
            f"{settings.upload_timeout_s:g} s", drain=False,
        ) from exc
    except ClientDisconnect:
        raise
    if error is not None:
        raise error
    if not collector.ended:
        raise UploadError(
            400, "malformed multipart body: incomplete (no closing boundary)", drain=False
        )
    reject_unknown(collector.form.fields, accepted, "form field")
    return collector.result()

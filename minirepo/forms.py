"""Request forms parsed within the upload API's limits, while they are read.

werkzeug caps each text field (MAX_FORM_MEMORY_SIZE) and the number of parts
(MAX_FORM_PARTS), but not the text fields' sum, and it opens a spool file for every file
part: with one upload token, 16 fields of 4 MiB held 196 MiB, and 995 file parts held 995
descriptors until other requests failed. Here text fields (names and values) are capped in
total at `max_metadata_size` as they arrive, and a file part beyond the two the upload API
has (`content`, `gpg_signature`; twine sends `attestations` as text) is refused before a
spool file is opened for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

from minirepo.errors import InvalidUpload, TooLarge

if TYPE_CHECKING:
    from werkzeug.formparser import TStreamFactory

MAX_FILE_PARTS = 2


def fields_too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"Form fields too large: their total is limited to {limit} bytes "
        "(the server's max_metadata_size)"
    )


class LimitedFormParser(FormDataParser):
    """werkzeug's form parser, with the text fields of a form capped in total and its
    file parts counted. Hooks werkzeug 3's `_parse_multipart` and `_parse_urlencoded`.

    `max_form_memory_size` still bounds the decoder's buffer (a part's headers); the total
    replaces werkzeug's cap on each field, so one huge field gets the same clear refusal.
    """

    def __init__(
        self,
        stream_factory: TStreamFactory,
        *,
        fields_limit: int,
        max_form_memory_size: int | None,
        max_content_length: int | None,
        max_form_parts: int | None,
        cls: type[MultiDict[str, Any]],
    ) -> None:
        super().__init__(
            stream_factory,
            max_form_memory_size,
            max_content_length,
            cls,
            max_form_parts=max_form_parts,
        )
        self.fields_limit = fields_limit

    def _parse_multipart(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[IO[bytes], MultiDict[str, Any], MultiDict[str, Any]]:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")  # werkzeug's answer: an empty form
        parser = _LimitedMultiPartParser(self, self.fields_limit)
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files

    def _parse_urlencoded(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[IO[bytes], MultiDict[str, Any], MultiDict[str, Any]]:
        """A urlencoded body is all text fields, and werkzeug reads it in one go."""
        if content_length is not None and content_length > self.fields_limit:
            raise fields_too_large(self.fields_limit)
        body = stream.read(self.fields_limit + 1)
        if len(body) > self.fields_limit:
            raise fields_too_large(self.fields_limit)
        return super()._parse_urlencoded(io.BytesIO(body), mimetype, content_length, options)


class _LimitedMultiPartParser(MultiPartParser):
    def __init__(self, owner: LimitedFormParser, fields_limit: int) -> None:
        super().__init__(
            owner.stream_factory,
            owner.max_form_memory_size,
            owner.cls,
            max_form_parts=owner.max_form_parts,
        )
        self.fields_limit = fields_limit

    def parse(
        self, stream: IO[bytes], boundary: bytes, content_length: int | None
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        decoder = MultipartDecoder(
            boundary, self.max_form_memory_size, max_parts=self.max_form_parts
        )
        parts = _Parts(self, content_length)
        for data in _chunks(stream, self.buffer_size):
            decoder.receive_data(data)
            event = decoder.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                parts.feed(event)
                event = decoder.next_event()
        return self.cls(parts.fields), self.cls(parts.files)


class _Parts:
    """The form so far: text fields kept and counted, file parts counted and spooled."""

    def __init__(self, parser: _LimitedMultiPartParser, content_length: int | None) -> None:
        self.parser = parser
        self.content_length = content_length
        self.fields: list[tuple[str, str]] = []
        self.files: list[tuple[str, FileStorage]] = []
        self.text_size = 0
        self.file_parts = 0
        self.part: Field | File | None = None
        self.chunks: list[bytes] = []
        self.spool: IO[bytes] | None = None

    def feed(self, event: Event) -> None:
        if isinstance(event, Field):
            self._count_text(len(event.name or ""))
            self.part, self.chunks, self.spool = event, [], None
        elif isinstance(event, File):
            self.file_parts += 1
            if self.file_parts > MAX_FILE_PARTS:
                raise InvalidUpload(
                    f"Too many file parts: an upload has at most {MAX_FILE_PARTS} "
                    "('content' and 'gpg_signature')"
                )
            spool = self.parser.start_file_streaming(event, self.content_length)
            self.part, self.chunks, self.spool = event, [], spool
        elif isinstance(event, Data):
            if self.spool is None:
                self._count_text(len(event.data))
                self.chunks.append(event.data)
            else:
                self.spool.write(event.data)
            if not event.more_data:
                self._finish_part()

    def _count_text(self, size: int) -> None:
        self.text_size += size
        if self.text_size > self.parser.fields_limit:
            raise fields_too_large(self.parser.fields_limit)

    def _finish_part(self) -> None:
        if isinstance(self.part, Field):
            charset = self.parser.get_part_charset(self.part.headers)
            value = b"".join(self.chunks).decode(charset, "replace")
            self.fields.append((self.part.name, value))
            self.chunks = []
        elif isinstance(self.part, File) and self.spool is not None:
            self.spool.seek(0)
            storage = FileStorage(
                self.spool, self.part.filename, self.part.name, headers=self.part.headers
            )
            self.files.append((self.part.name, storage))


def _chunks(stream: IO[bytes], size: int) -> Iterator[bytes | None]:
    """The body in chunks, then None: the decoder's signal that the body has ended."""
    while data := stream.read(size):
        yield data
    yield None

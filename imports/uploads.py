"""Upload handlers that hash a file's content while Django stores it.

The SHA-256 of an upload is what tells a repeated file (``services.import_job_create`` warns
when an organization imports the same content again within 30 days). It is computed from the
chunks as they arrive from the request body, so nothing re-reads a 100 MB file on the request
thread; the hash is set on the uploaded file as ``content_sha256``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.files.base import File
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler


class _HashingMixin:
    """Hashes every chunk this handler sees; the file it completes carries the digest."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        # first: the memory handler's new_file raises StopFutureHandlers when it takes the file
        self._sha256 = hashlib.sha256()
        super().new_file(*args, **kwargs)  # type: ignore[misc]

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self._sha256.update(raw_data)
        return super().receive_data_chunk(raw_data, start)  # type: ignore[misc]

    def file_complete(self, file_size: int) -> UploadedFile | None:
        uploaded = super().file_complete(file_size)  # type: ignore[misc]
        if uploaded is not None:
            uploaded.content_sha256 = self._sha256.hexdigest()
        return uploaded


class HashingMemoryFileUploadHandler(_HashingMixin, MemoryFileUploadHandler):
    pass


class HashingTemporaryFileUploadHandler(_HashingMixin, TemporaryFileUploadHandler):
    pass


class HashingFile(File):
    """``upload`` for storage when no handler hashed it (admin, tests, other callers): the
    storage reads it in chunks to write it, and each chunk is hashed on the way."""

    def __init__(self, upload: UploadedFile) -> None:
        super().__init__(upload, name=upload.name)
        self.sha256 = hashlib.sha256()

    @property
    def size(self) -> int:
        return self.file.size

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in self.file.chunks(chunk_size):
            self.sha256.update(chunk)
            yield chunk


def content_hash_and_storable(upload: UploadedFile) -> tuple[str | None, File]:
    """The upload's hash if a handler already computed it, and what to hand to storage
    (a ``HashingFile`` when the hash is still to be computed while storing)."""
    known = getattr(upload, "content_sha256", None)
    if known:
        return known, upload
    return None, HashingFile(upload)


# A file system names a file in at most 255 bytes (ext4, XFS, APFS); storage may add "_" and
# seven characters to make a name unique. 200 characters of "é" are 400 bytes: the upload's
# save raised ENAMETOOLONG, a 500 with nothing stored.
NAME_MAX_BYTES = 200


def upload_name(upload: UploadedFile, default: str) -> str:
    """The upload's file name without any folders, cut to ``NAME_MAX_BYTES`` bytes of UTF-8
    (never inside a character), keeping its extension: what its job or BOM records and what
    storage saves it as."""
    name = Path(upload.name or default).name or default
    if len(name.encode()) <= NAME_MAX_BYTES:
        return name
    stem, suffix = Path(name).stem, Path(name).suffix
    if len(suffix.encode()) > 16:  # not an extension we read: cut the whole name
        stem, suffix = name, ""
    room = NAME_MAX_BYTES - len(suffix.encode())
    return stem.encode()[:room].decode(errors="ignore") + suffix

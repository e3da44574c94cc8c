"""Attachments on disk, addressed by their SHA-256: the same file twice is stored once.

Files live under ``<data_dir>/blobs/ab/cd/<sha256>``; the reference is ``sha256:<hex>``.
Writes go to a temporary name and are renamed into place, so a crash never leaves a torn
file under a valid reference. For several machines, point ``data_dir`` at shared storage (or
replace this adapter with an object store behind the same two methods).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path


class BlobTooLarge(ValueError):
    pass


class FileBlobStore:
    def __init__(self, root: Path, max_bytes: int = 20 * 1024 * 1024) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def _write(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return f"sha256:{digest}"

    async def put(self, data: bytes) -> str:
        if len(data) > self.max_bytes:
            raise BlobTooLarge(f"{len(data)} bytes is above the limit of {self.max_bytes}")
        return await asyncio.to_thread(self._write, data)

    async def get(self, ref: str) -> bytes:
        kind, _, digest = ref.partition(":")
        if (
            kind != "sha256"
            or len(digest) != 64
            or not all(c in "0123456789abcdef" for c in digest)
        ):
            raise KeyError(ref)
        path = self._path(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(ref) from None

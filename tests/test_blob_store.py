"""The attachment store: content-addressed, deduplicated, bounded, never a torn file."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.blob_store import BlobTooLarge, FileBlobStore


async def test_put_get_and_dedupe(tmp_path: Path) -> None:
    """The same bytes give the same reference and one file; get returns them."""
    store = FileBlobStore(tmp_path)
    a = await store.put(b"slip gaji")
    b = await store.put(b"slip gaji")
    assert a == b
    assert a.startswith("sha256:")
    assert await store.get(a) == b"slip gaji"
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


async def test_limits_and_bad_references(tmp_path: Path) -> None:
    """Too large is refused; unknown or malformed references are KeyError, not a path."""
    store = FileBlobStore(tmp_path, max_bytes=4)
    with pytest.raises(BlobTooLarge):
        await store.put(b"12345")
    for ref in ("sha256:" + "0" * 64, "sha256:../../etc/passwd", "md5:abc", ""):
        with pytest.raises(KeyError):
            await store.get(ref)

"""Deleting and finding stored files in bulk, whatever the storage.

The expiry deletes two files per job, thousands of jobs an hour at scale:
one S3 request per file would not keep up, so S3 gets DeleteObjects with up
to 1,000 keys per request. Local storage deletes file by file (a local
unlink is cheap). Listing old files serves the orphan sweep.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime

from django.core.files.storage import FileSystemStorage, Storage

logger = logging.getLogger(__name__)

# S3's limit on keys per DeleteObjects request.
S3_DELETE_BATCH = 1000


def _s3_storage_class():
    from storages.backends.s3 import S3Storage

    return S3Storage


def delete_files(*, storage: Storage, names: list[str]) -> set[str]:
    """Deletes ``names`` (empty ones skipped); returns those that could not be."""
    names = [name for name in dict.fromkeys(names) if name]
    if not names:
        return set()
    if isinstance(storage, _s3_storage_class()):
        return _delete_s3(storage, names)
    failed = set()
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("Could not delete %s", name, exc_info=True)
            failed.add(name)
    return failed


def _s3_key(storage, name: str) -> str:
    from storages.utils import clean_name

    return storage._normalize_name(clean_name(name))


def _delete_s3(storage, names: list[str]) -> set[str]:
    client = storage.connection.meta.client
    by_key = {_s3_key(storage, name): name for name in names}
    keys = list(by_key)
    failed = set()
    for start in range(0, len(keys), S3_DELETE_BATCH):
        chunk = keys[start : start + S3_DELETE_BATCH]
        # Quiet: the answer lists only the keys that failed. A key that does
        # not exist counts as deleted.
        response = client.delete_objects(
            Bucket=storage.bucket_name,
            Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
        )
        for error in response.get("Errors", []):
            logger.warning(
                "Could not delete %s from the bucket: %s %s",
                error.get("Key"),
                error.get("Code"),
                error.get("Message"),
            )
            failed.add(by_key.get(error.get("Key"), error.get("Key")))
    return failed


def old_files(
    *, storage: Storage, folder: str, older_than: datetime, page: int = 1000
) -> Iterator[list[str]]:
    """Names (as the storage knows them) under ``folder`` last written before
    ``older_than``, a page at a time."""
    if isinstance(storage, _s3_storage_class()):
        yield from _old_s3_files(storage, folder, older_than, page)
    elif isinstance(storage, FileSystemStorage):
        yield from _old_local_files(storage, folder, older_than, page)


def _old_s3_files(storage, folder: str, older_than: datetime, page: int) -> Iterator[list[str]]:
    prefix = _s3_key(storage, folder).rstrip("/") + "/"
    location = prefix[: -len(folder) - 1]
    paginator = storage.connection.meta.client.get_paginator("list_objects_v2")
    for result in paginator.paginate(
        Bucket=storage.bucket_name, Prefix=prefix, PaginationConfig={"PageSize": page}
    ):
        names = [
            item["Key"][len(location) :]
            for item in result.get("Contents", [])
            if item["LastModified"] < older_than
        ]
        if names:
            yield names


def _old_local_files(
    storage: FileSystemStorage, folder: str, older_than: datetime, page: int
) -> Iterator[list[str]]:
    try:
        entries = os.scandir(storage.path(folder))
    except FileNotFoundError:
        return
    cutoff = older_than.timestamp()
    names: list[str] = []
    with entries:
        for entry in entries:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                names.append(f"{folder}/{entry.name}")
                if len(names) == page:
                    yield names
                    names = []
    if names:
        yield names

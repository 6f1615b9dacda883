"""Local-disk storage for ``file://`` URLs."""

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from app.domain.storage import FileStorage, StorageBackend
from packyard import hookimpl


def _file_storage(url: str) -> StorageBackend:
    return FileStorage(unquote(urlsplit(url).path))


@hookimpl
def register_storage_backends(
    register: Callable[[str, Callable[[str], StorageBackend]], None],
) -> None:
    register("file", _file_storage)

"""One streaming pass computing every digest a registry publishes."""

import hashlib


class MultiDigest:
    """sha256, md5 and blake2b-256 of a byte stream, updated chunk by chunk."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._blake2 = hashlib.blake2b(digest_size=32)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self._blake2.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def blake2_256(self) -> str:
        return self._blake2.hexdigest()

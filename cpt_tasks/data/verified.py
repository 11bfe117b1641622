"""A binary reader that checks what it read against what the source's listing promised.

Every input file is listed with a size and a digest (a local file's sha256, the Hub's LFS sha256, an object's
checksum or ETag). :class:`VerifyingReader` wraps the open stream, hashes every byte as it passes and, once the
stream is exhausted, compares the count and the digest: a mismatch raises
:class:`~cpt_tasks.errors.BadDataError` naming the file. :meth:`VerifyingReader.drain` reads what is left, so a
file that the budget cut short is still checked to its end.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from cpt_tasks.errors import BadDataError

DRAIN_BLOCK = 1 << 22


class VerifyingReader:
    """Wraps ``raw`` (a binary stream); ``algorithm`` is a hashlib name ("sha256", "md5", ...) or None to
    check the size alone. ``name`` is what error messages call the file."""

    def __init__(self, raw: BinaryIO, name: str, size: int | None, digest: str | None,
                 algorithm: str | None = "sha256") -> None:
        self.raw, self.name, self.size, self.digest = raw, name, size, digest
        self.hasher = hashlib.new(algorithm) if algorithm and digest else None
        self.seen = 0
        self.checked = False

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.seen += len(data)
            if self.hasher is not None:
                self.hasher.update(data)
            if self.size is not None and self.seen > self.size:
                raise BadDataError(f"{self.name}: more bytes than the {self.size:,} its listing gave")
        elif n != 0:
            self.check()
        return data

    def readable(self) -> bool:
        return True

    def check(self) -> None:
        """Compare size and digest with the listing (once, at the end of the stream)."""
        if self.checked:
            return
        self.checked = True
        if self.size is not None and self.seen != self.size:
            raise BadDataError(f"{self.name}: {self.seen:,} bytes read, its listing gave {self.size:,}")
        if self.hasher is not None and self.hasher.hexdigest() != self.digest:
            raise BadDataError(f"{self.name}: {self.hasher.name} {self.hasher.hexdigest()} does not match "
                               f"{self.digest} from its listing (corrupt or changed since listed)")

    def drain(self) -> None:
        """Read the rest of the stream and check it (a file the budgets cut short is verified all the same)."""
        while self.read(DRAIN_BLOCK):
            pass

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

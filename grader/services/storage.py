"""Content-addressed store of uploaded files, by sha256: rows of `submission_file` in the database.

The database is the store so that a worker on any host reads a submission from where it reads the run, with
no shared folder to mount. Files are named by their hash only, so an uploaded name never becomes a path,
identical uploads share one row, and a read verifies that the bytes are the ones that were graded.
`SubmissionStore` (`SUBMISSIONS_DIR/ab/cd/<sha256>`) is the former store, still read for files written
before the move.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from flask import current_app
from sqlalchemy.exc import IntegrityError

from grader.database import db
from grader.models import SubmissionFile

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class StorageError(RuntimeError):
    """A stored file is missing or does not match its hash."""


class SubmissionStore:
    """Put and get submission bytes by sha256 under `root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        """Where the file with this hash lives (the hash is validated: it is the only path input)."""
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` (atomically; a no-op when already there) and return its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename: a reader never sees a half-written submission.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    def get(self, sha256: str) -> bytes:
        """The stored bytes, checked against their hash."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"submission file {sha256} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError(f"submission file {sha256} is corrupt")
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a file with this hash is stored."""
        return self.path_for(sha256).exists()

    def delete(self, sha256: str) -> None:
        """Remove the file (callers check no submission still refers to it)."""
        self.path_for(sha256).unlink(missing_ok=True)


class DatabaseStore:
    """Submission bytes in the database, written in the caller's transaction (committed with the submission)."""

    def __init__(self, legacy: SubmissionStore | None = None) -> None:
        self.legacy = legacy

    def put(self, data: bytes) -> str:
        """Add `data` to the session (nothing when already stored) and return its sha256; the caller commits."""
        sha256 = hashlib.sha256(data).hexdigest()
        if db.session.get(SubmissionFile, sha256) is None:
            try:
                # A savepoint: two uploads of the same bytes at once both succeed, sharing one row.
                with db.session.begin_nested():
                    db.session.add(SubmissionFile(sha256=sha256, size=len(data), data=data))
            except IntegrityError:
                pass
        return sha256

    def get(self, sha256: str) -> bytes:
        """The stored bytes, checked against their hash (from the former folder store if not in the table)."""
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        row = db.session.get(SubmissionFile, sha256)
        if row is None:
            if self.legacy is not None and self.legacy.exists(sha256):
                return self.legacy.get(sha256)
            raise StorageError(f"submission file {sha256} is missing from the database")
        data = bytes(row.data)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError(f"submission file {sha256} is corrupt")
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a file with this hash is stored."""
        if db.session.get(SubmissionFile, sha256) is not None:
            return True
        return self.legacy is not None and self.legacy.exists(sha256)


def store() -> DatabaseStore:
    """The current app's store: the database, with the former folder store read as a fallback."""
    folder = Path(current_app.config["SUBMISSIONS_DIR"])
    return DatabaseStore(SubmissionStore(folder) if folder.is_dir() else None)

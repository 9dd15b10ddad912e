"""Writes that never leave partial outputs: write aside, then rename into place."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from tfrdp.errors import TfrdpError


def check_writable(path, overwrite, inputs=()):
    """Refuses to replace an input, or an existing output without `overwrite`."""
    path = Path(path)
    for source in inputs:
        if Path(source).exists() and path.exists() and path.resolve() == Path(source).resolve():
            raise TfrdpError(f"output {path} is the input; choose another output")
    if path.exists() and not overwrite:
        raise TfrdpError(f"output {path} exists (pass --overwrite to replace it)")


def write_bytes_atomic(path, content):
    path = Path(path)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


@contextmanager
def staged_path(path):
    """Yields a temporary sibling of `path` to fill; moves it into place on success.

    On any error the temporary file or folder is removed and `path` is untouched.
    An existing `path` (a file or a folder) is replaced only once the new one is complete.
    """
    path = Path(path)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent or "."))
    try:
        staging = staging_root / path.name
        yield staging
        replace(staging, path)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def replace(new, target):
    """Moves `new` to `target`, replacing a file or folder already there."""
    new, target = Path(new), Path(target)
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)

"""Writing files so that neither a kill nor a full disk leaves a half-written one under its name.

A file is written under a temporary name beside its destination and renamed into place
(`os.replace` is atomic on POSIX). A directory of several files is written the same way, and a
reader trusts it only once the file written last exists: a token cache's `manifest.json`, a model
directory's `config.json`, a checkpoint's `trainer_state.json`.

Data goes through Python's own file objects, so a full disk or an unwritable place raises an
`OSError` with its errno (torch.save, safetensors and np.save to a path raise other exceptions
or lose the errno); `writing` turns that into one line saying what to do.
"""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from toktts.errors import TokttsError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and a rename.
    On failure the temporary file is removed and whatever was at `path` is left untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def writing(target: str | Path, fix: str) -> Iterator[None]:
    """Report an OSError raised inside the block as a one-line TokttsError naming `target`, the
    reason, and `fix` (e.g. "choose another train.output_dir"); a full disk also suggests
    freeing space."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        hint = f"free some space or {fix}" if e.errno in NO_SPACE else fix
        raise TokttsError(f"could not write {str(target)!r} ({reason}); {hint}") from None

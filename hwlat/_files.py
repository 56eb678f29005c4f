"""Files written whole or not at all: a failure never leaves a partial export or report behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hwlat._errors import HwlatError


def write_atomically(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Call each writer on a temporary file beside its target, then move all of them into place."""
    temporaries: dict[Path, Path] = {}
    umask = os.umask(0)
    os.umask(umask)
    try:
        for target, write in writers.items():
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; an export gets a normal file's mode
            temporaries[target] = Path(name)
            write(temporaries[target])
        for target, temporary in temporaries.items():
            os.replace(temporary, target)
    except OSError as exc:
        raise HwlatError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)

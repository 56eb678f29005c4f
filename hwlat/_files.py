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


def write_npz(path: str | os.PathLike, header: dict, arrays: dict) -> Path:
    """Write one `.npz` file: a JSON `header` beside `arrays` (no pickles), so it loads after library upgrades."""
    import json

    import numpy as np

    path = Path(path)
    try:
        with path.open("wb") as stream:
            np.savez(stream, header=np.asarray(json.dumps(header)), **arrays)
    except OSError as error:
        raise HwlatError(f"cannot write {path}: {error.strerror}") from None
    return path


def read_npz(path: str | os.PathLike, what: str) -> tuple[dict, dict]:
    """(header, arrays) of a file written by `write_npz`; a one-line error naming `what` it should have been."""
    import json

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        header = json.loads(str(arrays.pop("header")))
    except (OSError, ValueError, KeyError, EOFError) as error:  # EOFError: an empty file
        raise HwlatError(f"{path}: not a saved {what} ({error or type(error).__name__})") from None
    return header, arrays

"""Optuna storages from one string: an SQLAlchemy URL (heartbeats on) or a journal file path."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from hwlat._errors import HwlatError
from hwlat.store import hide_password

#: attempts at creating an RDB storage whose tables another worker may be creating concurrently
_CREATE_ATTEMPTS = 5


def open_storage(storage: str | None, heartbeat_s: float = 10.0) -> optuna.storages.BaseStorage | None:
    """None (in memory), a URL as an RDB storage with heartbeats, or a `.log`/`.journal` path as a journal file.

    With an RDB storage a worker that dies stops beating; after two heartbeats its running trial is failed and
    `RetryHeartbeatStaleTrialCallback` enqueues the same architecture again, so no trial is lost. Journal files have
    no heartbeat: a killed worker's running trial stays running (it never counts as completed).
    """
    if storage is None:
        return None
    if not heartbeat_s > 0:
        raise HwlatError(f"heartbeat must be a positive number of seconds, got {heartbeat_s}")
    if "://" in storage:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return RDBStorage(storage, heartbeat_interval=max(1, round(heartbeat_s)),
                                  grace_period=max(2, round(2 * heartbeat_s)),
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
            except IntegrityError:  # another worker is creating the tables at the same moment
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise HwlatError(f"cannot create search storage {public_url(storage)}: "
                                     "concurrent creation kept failing") from None
                time.sleep(0.5)
            except (SQLAlchemyError, ImportError, ValueError) as error:  # bad URL, missing driver, unreachable
                raise HwlatError(f"cannot open search storage {public_url(storage)}: {error}") from None
    path = Path(storage).expanduser()
    if path.suffix not in (".log", ".journal"):
        raise HwlatError(f"search storage {storage!r} is neither a URL (sqlite:///file.db, postgresql://...) "
                         "nor a journal file (.log/.journal)")
    if not path.parent.is_dir():
        raise HwlatError(f"search storage {storage!r}: directory {path.parent} does not exist")
    return JournalStorage(JournalFileBackend(str(path)))


def public_url(storage: str) -> str:
    """The storage string with any password masked."""
    return hide_password(storage) if "://" in storage else storage

"""Devices by name: the live local machine plus the ones registered in a JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hwlat._errors import HwlatError
from hwlat._home import hwlat_home
from hwlat.devices._fingerprint import device_id, read_fingerprint

LOCAL = "local"
KINDS = ("local", "rpc")


@dataclass(frozen=True)
class Device:
    """A machine latencies are measured on; `connection` says how to reach it (empty for local)."""

    name: str
    kind: str
    fingerprint: dict
    connection: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable id from the hardware part of the fingerprint (same machine, same id)."""
        return device_id(self.fingerprint)

    def as_dict(self) -> dict:
        """JSON-serialisable form: name, id, kind, connection, fingerprint."""
        return {"name": self.name, "id": self.id, "kind": self.kind, "connection": self.connection,
                "fingerprint": self.fingerprint}


def local_device(name: str = LOCAL) -> Device:
    """This machine, with a fingerprint read now."""
    return Device(name=name, kind="local", fingerprint=read_fingerprint())


class DeviceRegistry:
    """Named devices stored in a JSON file (default ``$HWLAT_HOME/devices.json``); "local" is always there."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else hwlat_home() / "devices.json"

    def names(self) -> list[str]:
        """"local" followed by the registered names in alphabetical order."""
        return [LOCAL, *sorted(self._load())]

    def get(self, name: str) -> Device:
        """The device called `name`; "local" is this machine as it is now."""
        if name == LOCAL:
            return local_device()
        devices = self._load()
        if name not in devices:
            raise HwlatError(f"unknown device {name!r}; known devices: {', '.join([LOCAL, *sorted(devices)])}")
        return devices[name]

    def add(self, device: Device) -> None:
        """Register `device` under its name, replacing any device of the same name."""
        if device.name == LOCAL:
            raise HwlatError(f"the name {LOCAL!r} is reserved for this machine; register it under another name")
        if device.kind not in KINDS:
            raise HwlatError(f"unknown device kind {device.kind!r}; expected one of {', '.join(KINDS)}")
        devices = self._load()
        devices[device.name] = device
        self._save(devices)

    def remove(self, name: str) -> None:
        """Forget the device called `name`."""
        devices = self._load()
        if name not in devices:
            raise HwlatError(f"cannot remove {name!r}: not a registered device; registered: "
                             f"{', '.join(sorted(devices)) or 'none'}")
        del devices[name]
        self._save(devices)

    def __iter__(self) -> Iterator[Device]:
        """The live local device, then the registered ones in name order."""
        yield local_device()
        yield from (device for _, device in sorted(self._load().items()))

    def _load(self) -> dict[str, Device]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise HwlatError(f"cannot read device registry {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HwlatError(f"device registry {self.path} is not valid JSON: {exc}") from None
        entries = data.get("devices") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise HwlatError(f"device registry {self.path} is malformed: expected an object with a 'devices' object")
        return {name: self._parse_entry(name, entry) for name, entry in entries.items()}

    def _parse_entry(self, name: str, entry: object) -> Device:
        if not isinstance(entry, dict):
            raise HwlatError(f"device registry {self.path} is malformed: entry {name!r} is not an object")
        kind, fingerprint, connection = entry.get("kind"), entry.get("fingerprint"), entry.get("connection", {})
        if kind not in KINDS or not isinstance(fingerprint, dict) or not isinstance(connection, dict):
            raise HwlatError(f"device registry {self.path} is malformed: entry {name!r} needs a kind in "
                             f"{KINDS}, a 'fingerprint' object and an optional 'connection' object")
        return Device(name=name, kind=kind, fingerprint=fingerprint, connection=connection)

    def _save(self, devices: dict[str, Device]) -> None:
        """Write the whole registry to a temporary file, then atomically move it into place."""
        data = {"devices": {name: {"kind": d.kind, "connection": d.connection, "fingerprint": d.fingerprint}
                            for name, d in sorted(devices.items())}}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as file:
                json.dump(data, file, indent=2, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise HwlatError(f"cannot write device registry {self.path}: {exc.strerror or exc}") from None

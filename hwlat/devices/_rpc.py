"""Reach remote devices through a TVM RPC tracker: status of a key, sessions with bounded waits, fingerprints.

A remote device is a tracker address, a key (every RPC server registered under it is one board of the
same kind) and a TVM target dict for cross-compiling. Boards run ``hwlat devices serve`` (TVM's RPC server
plus a function returning the board's fingerprint) or plain ``python -m tvm.exec.rpc_server``.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from hwlat._errors import HwlatError
from hwlat.devices._registry import Device

if TYPE_CHECKING:
    from typing_extensions import Self

#: global function that ``hwlat devices serve`` registers on the board: returns its fingerprint as JSON
FINGERPRINT_FUNCTION = "hwlat.fingerprint"


def parse_tracker(text: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets) as a (host, port) pair; HwlatError if malformed."""
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HwlatError(f"RPC tracker address must be HOST:PORT (e.g. 127.0.0.1:9190), got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class KeyStatus:
    """Servers registered under one key at a tracker (HOST:PORT as the tracker sees them), how many are free now."""

    tracker: str
    key: str
    total: int
    free: int
    other_keys: tuple[str, ...]
    addresses: tuple[str, ...] = ()


class NoServerError(HwlatError):
    """No server with the key became free within the wait."""


class _TrackerConnection:
    """One socket to a tracker speaking its JSON protocol, every wait bounded by a timeout."""

    def __init__(self, tracker: str, timeout_s: float = 10.0) -> None:
        from tvm.rpc import base

        self.tracker, self._base = tracker, base
        address = parse_tracker(tracker)
        try:
            self._sock = socket.create_connection(address, timeout=timeout_s)
        except OSError as exc:
            raise HwlatError(f"cannot reach RPC tracker {tracker}: {exc.strerror or exc}") from None
        try:
            self._sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            magic = struct.unpack("<i", base.recvall(self._sock, 4))[0]
        except OSError as exc:
            self.close()
            raise HwlatError(f"RPC tracker {tracker} did not complete the handshake: {exc}") from None
        if magic != base.RPC_TRACKER_MAGIC:
            self.close()
            raise HwlatError(f"{tracker} answered but is not a TVM RPC tracker")

    def call(self, message: list, timeout_s: float) -> object:
        """Send one JSON message and return the answer; socket.timeout if none comes within `timeout_s`."""
        self._sock.settimeout(timeout_s)
        self._base.sendjson(self._sock, message)
        return self._base.recvjson(self._sock)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def key_status(tracker: str, key: str, timeout_s: float = 10.0) -> KeyStatus:
    """How many servers are registered under `key` at `tracker` and how many are free."""
    from tvm.rpc.base import TrackerCode

    with _TrackerConnection(tracker, timeout_s) as connection:
        try:
            answer = connection.call([TrackerCode.SUMMARY], timeout_s)
        except OSError as exc:
            raise HwlatError(f"RPC tracker {tracker} gave no summary: {exc}") from None
    if not (isinstance(answer, list) and answer and answer[0] == TrackerCode.SUCCESS):
        raise HwlatError(f"RPC tracker {tracker} answered the summary request with {answer!r}")
    infos = answer[1].get("server_info", [])
    servers = [info.get("key", "").removeprefix("server:") for info in infos]
    addresses = sorted(":".join(map(str, info.get("addr", ()))) for info, server in zip(infos, servers)
                       if server == key)
    free = answer[1].get("queue_info", {}).get(key, {}).get("free", 0)
    return KeyStatus(tracker, key, total=servers.count(key), free=int(free),
                     other_keys=tuple(sorted(set(servers) - {key})), addresses=tuple(addresses))


def wait_for_servers(tracker: str, key: str, wait_s: float, device: str) -> KeyStatus:
    """Poll the tracker until a server with `key` is registered; HwlatError naming `device` after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        status = key_status(tracker, key)
        if status.total:
            return status
        if time.monotonic() >= deadline:
            others = ", ".join(status.other_keys) or "none"
            raise NoServerError(f"device {device!r} never answered: no RPC server with key {key!r} registered at "
                                f"tracker {tracker} within {wait_s:.0f} s (keys registered there: {others})")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


class RemoteSession:
    """One RPC session on a server, closed by `close()` or on leaving `with` rather than left to the GC.

    TVM has no call that ends a session: its connection closes when the last object holding it goes. So
    `rpc` is the only handle given out, and remote modules and functions taken from it must not outlive
    the item they serve (keep them local; clear the frames of a traceback that escapes).
    """

    def __init__(self, session, server: str) -> None:
        self._session, self.server = session, server

    @property
    def rpc(self):
        """The TVM `RPCSession`; HwlatError once closed."""
        if self._session is None:
            raise HwlatError(f"the RPC session with server {self.server} is closed")
        return self._session

    def close(self) -> None:
        """Release the session now: its handle and cached remote functions, each holding the connection."""
        session, self._session = self._session, None
        if session is not None:
            vars(session).clear()  # so a stray reference to the RPCSession object keeps nothing open

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request_session(tracker: str, key: str, wait_s: float, session_timeout_s: float = 0.0) -> RemoteSession:
    """A session on a free server with `key`; NoServerError if none is free within `wait_s`.

    With `session_timeout_s` > 0 the server kills the session after that many seconds.
    """
    from tvm import rpc
    from tvm.rpc.base import TrackerCode

    with _TrackerConnection(tracker, timeout_s=min(wait_s, 10.0) or 10.0) as connection:
        try:
            answer = connection.call([TrackerCode.REQUEST, key, "", 1], timeout_s=wait_s)
        except OSError as exc:  # socket.timeout is an OSError: nothing free in time
            raise NoServerError(f"no RPC server with key {key!r} became free at tracker {tracker} within "
                                f"{wait_s:.0f} s ({exc or 'timed out'})") from None
    if not (isinstance(answer, list) and answer and answer[0] == TrackerCode.SUCCESS):
        raise HwlatError(f"RPC tracker {tracker} refused a session for key {key!r}: {answer!r}")
    host, port, matchkey = answer[1]
    server = f"{host}:{port}"
    try:
        return RemoteSession(rpc.connect(host, port, matchkey, session_timeout=session_timeout_s), server)
    except Exception as exc:  # TVM raises its own error types when the server is gone  # noqa: BLE001
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise NoServerError(f"RPC server {server} with key {key!r} did not accept a session: "
                            f"{lines[-1] if lines else type(exc).__name__}") from None


def rpc_address(device: Device) -> tuple[str, str]:
    """(tracker, key) of a remote device; HwlatError if its registry entry lacks them."""
    tracker, key = device.connection.get("tracker"), device.connection.get("key")
    if not tracker or not key:
        raise HwlatError(f"device {device.name!r} is 'rpc' but its connection lacks 'tracker' and 'key'")
    return tracker, key


class Connected(NamedTuple):
    """A remote device as reached now: fingerprint read on the board when its server offers it."""

    device: Device
    status: KeyStatus
    from_board: bool


def connect_device(device: Device, wait_s: float) -> Connected:
    """Wait up to `wait_s` for the device's servers, then read its fingerprint in one short session.

    The status is taken before that session, so `status.free` counts the servers free for profiling.
    """
    tracker, key = rpc_address(device)
    status = wait_for_servers(tracker, key, wait_s, device.name)
    try:
        with request_session(tracker, key, wait_s) as session:
            fingerprint = remote_fingerprint(session.rpc)
    except NoServerError as exc:
        raise HwlatError(f"device {device.name!r}: {exc}") from None
    if fingerprint is None:
        return Connected(device, status, from_board=False)
    return Connected(replace(device, fingerprint=fingerprint), status, from_board=True)


def remote_fingerprint(session) -> dict | None:
    """The board's own fingerprint if its server is ``hwlat devices serve``, else None."""
    try:
        function = session.get_function(FINGERPRINT_FUNCTION)
    except (AttributeError, RuntimeError):  # a plain TVM server does not have the function
        return None
    return json.loads(str(function()))


def target_fingerprint(target: dict) -> dict:
    """What a TVM target dict says about the hardware, in the keys of ``read_fingerprint`` (others None)."""
    host = target.get("host") if isinstance(target.get("host"), dict) else {}
    triple = target.get("mtriple") or host.get("mtriple")
    gpu = None
    if target.get("kind") not in ("llvm", "c"):
        gpu = {"name": f"{target.get('kind')} {target.get('arch') or target.get('model') or ''}".strip(), "count": 1}
    return {
        "source": "tvm-target", "cpu_model": target.get("mcpu") or target.get("model") or "unknown",
        "cpu_vendor": None, "cpu_arch": triple.split("-")[0] if triple else None,
        "cpu_flags": sorted(str(a).lstrip("+") for a in target.get("mattr", []) if str(a).startswith("+")),
        "physical_cores": None, "logical_cores": target.get("num-cores"), "caches": {}, "memory_bytes": None,
        "os": None, "os_release": None, "kernel": None, "libc": None, "python": None,
        "cpu_freq_mhz": {"current": None, "min": None, "max": None}, "scaling_governor": None,
        "cpu_affinity": None, "gpu": gpu,
    }


def register_remote_functions() -> None:
    """Server-side start-up hook of ``hwlat devices serve``: expose the board's fingerprint to clients."""
    import tvm_ffi

    from hwlat.devices._fingerprint import read_fingerprint

    tvm_ffi.register_global_func(FINGERPRINT_FUNCTION, lambda: json.dumps(read_fingerprint()), override=True)


def serve(tracker: str, key: str, host: str = "0.0.0.0", port: int = 9090, port_end: int = 9199) -> None:
    """Run a TVM RPC server registered at `tracker` under `key` until killed (the command to run on a board)."""
    from tvm import rpc

    address = parse_tracker(tracker)
    server = rpc.Server(host, port, port_end, key=key, tracker_addr=address,
                        server_init_callback=register_remote_functions)
    print(f"serving key {key!r} on {host}:{server.port}, registered at tracker {tracker}", flush=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so `finally` stops the server's worker
    try:
        server.proc.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.terminate()

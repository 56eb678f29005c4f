"""A TVM RPC tracker and servers for tests, each in its own process group, always stopped.

They run on 127.0.0.1, or across a veth pair into a network namespace the tests create (`NetnsLink`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from typing_extensions import Self


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RpcCluster:
    """Starts `python -m tvm.exec.rpc_tracker` and servers; `close()` kills every process group it started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}
        self.ports: set[int] = set()
        self._server_ports: dict[int, int] = {}
        self.tracker = ""

    def _start(self, name: str, args: list[str], prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        path = self.log_dir / f"{name}-{len(self.procs)}.log"
        with open(path, "w") as log:
            proc = subprocess.Popen([*prefix, sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        """What a process has logged so far (servers log each session's start, module load and end)."""
        return self.logs[proc.pid].read_text()

    def busy(self, proc: subprocess.Popen) -> bool:
        """True while a server is inside a session that has loaded a module (measuring)."""
        text = self.log(proc)
        return text.rfind("load_module") > text.rfind("finish serving")

    def start_tracker(self, host: str = "127.0.0.1", wait: bool = True) -> str:
        """Start the tracker on `host` (servers may start at once: they retry) and by default wait until it
        accepts connections; its HOST:PORT."""
        port = free_port(host)
        self.ports.add(port)
        self._tracker_proc = self._start("tracker", ["-m", "tvm.exec.rpc_tracker", "--host", host, "--port",
                                                     str(port), "--port-end", str(port + 1), "--silent"])
        self.tracker = f"{host}:{port}"
        if wait:
            self.wait_tracker()
        return self.tracker

    def wait_tracker(self, timeout_s: float = 60.0) -> None:
        """Wait until the tracker accepts connections."""
        host, port = self.tracker.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                assert self._tracker_proc.poll() is None, "tracker exited at start-up"
                assert time.monotonic() < deadline, "tracker did not listen in time"
                time.sleep(0.1)

    def start_server(self, key: str, hwlat_serve: bool = False, netns: NetnsLink | None = None) -> subprocess.Popen:
        """Start one RPC server registered under `key` (plain TVM, or `hwlat devices serve`), on 127.0.0.1 or
        on the namespace side of `netns`."""
        host = netns.inner_address if netns else "127.0.0.1"
        port = free_port()
        self.ports.add(port)
        if hwlat_serve:
            args = ["-m", "hwlat", "devices", "serve", "--tracker", self.tracker, "--key", key,
                    "--host", host, "--port", str(port), "--port-end", str(port + 1)]
        else:
            args = ["-m", "tvm.exec.rpc_server", "--host", host, "--port", str(port), "--port-end",
                    str(port + 1), "--tracker", self.tracker, "--key", key]
        proc = self._start(f"server-{key}", args, prefix=netns.exec_prefix() if netns else ())
        self._server_ports[proc.pid] = port
        return proc

    def port(self, server: subprocess.Popen) -> int:
        """The port a server started here listens on."""
        return self._server_ports[server.pid]

    def wait_servers(self, key: str, count: int, timeout_s: float = 180.0) -> None:
        """Wait until `count` servers with `key` are registered and free."""
        from hwlat.devices._rpc import key_status

        deadline = time.monotonic() + timeout_s
        while True:
            status = key_status(self.tracker, key)
            if status.total >= count and status.free >= count:
                return
            assert time.monotonic() < deadline, f"only {status.total} of {count} servers registered in time"
            time.sleep(0.2)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process group of `proc` (the server, its pool worker and any session process)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def client_connections(self) -> list:
        """This process's open TCP connections to the tracker or a server (none once every session is closed)."""
        return [c for c in psutil.Process().net_connections("tcp")
                if c.raddr and c.raddr.port in self.ports and c.status != psutil.CONN_TIME_WAIT]

    def leftovers(self, wait_s: float = 10.0) -> list[int]:
        """Process groups started here that still have a live member after `wait_s` (none once all are stopped)."""
        deadline = time.monotonic() + wait_s
        while True:
            alive = [proc.pid for proc in self.procs if _group_alive(proc.pid)]
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.1)

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


def _group_alive(pgid: int) -> bool:
    """True if a process of group `pgid` is alive (zombies waiting to be reaped do not count)."""
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS`; with `check`, a failure is an error quoting ip's own message."""
    answer = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and answer.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {answer.stderr.strip() or answer.returncode}")
    return answer


def netns_unavailable() -> str | None:
    """Why this machine cannot give tests a network namespace (None if it can: root, iproute2, netns allowed)."""
    if os.geteuid() != 0:
        return f"network namespaces need root (CAP_SYS_ADMIN); running as uid {os.geteuid()}"
    if not shutil.which("ip"):
        return "network namespaces need iproute2's `ip`, not found on PATH"
    probe = f"hwlat-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip() or made.returncode}"
    _ip("netns", "del", probe, check=False)
    return None


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces and veths of earlier test processes that died before cleaning up; their names."""
    stale = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(r"hwlat-test-(\d+)(?:-(\d+))?", name)
        if match and not psutil.pid_exists(int(match[1])):
            _ip("netns", "del", name, check=False)
            _ip("link", "del", f"hwl{match[1]}o{match[2] or 0}", check=False)
            stale.append(name)
    return stale


class NetnsLink:
    """A network namespace ``hwlat-test-<pid>`` joined to this one by a veth pair with a /30 between them.

    `outer_address` is this side's (listen there for the namespace to reach you), `inner_address` the
    namespace's. `close()` kills whatever still runs inside, then deletes the namespace and the veth pair;
    it is safe after a partial `open()` and idempotent.
    """

    def __init__(self, serial: int = 0) -> None:
        pid = os.getpid()
        self.name = f"hwlat-test-{pid}" + (f"-{serial}" if serial else "")
        self.outer_veth, self.inner_veth = f"hwl{pid}o{serial}", f"hwl{pid}i{serial}"  # IFNAMSIZ: 15 chars
        assert len(self.outer_veth) <= 15, "serial too large for an interface name"
        self.outer_address, self.inner_address = _free_pair(pid, serial)

    def open(self) -> NetnsLink:
        """Create the namespace, the veth pair and the addresses, both ends up (after removing stale ones)."""
        remove_stale_namespaces()
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer_veth, "type", "veth", "peer", "name", self.inner_veth)
        _ip("link", "set", self.inner_veth, "netns", self.name)
        _ip("addr", "add", f"{self.outer_address}/30", "dev", self.outer_veth)
        _ip("link", "set", self.outer_veth, "up")
        for args in (("addr", "add", f"{self.inner_address}/30", "dev", self.inner_veth),
                     ("link", "set", self.inner_veth, "up"), ("link", "set", "lo", "up")):
            _ip("netns", "exec", self.name, "ip", *args)
        return self

    def exec_prefix(self) -> tuple[str, ...]:
        """Command prefix that runs a program inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def add_delay(self, delay_ms: int) -> str | None:
        """Delay every packet leaving this side by `delay_ms` with `tc netem`; why not, if the kernel cannot."""
        answer = subprocess.run(["tc", "qdisc", "add", "dev", self.outer_veth, "root", "netem", "delay",
                                 f"{delay_ms}ms"], capture_output=True, text=True, check=False, timeout=30)
        return None if answer.returncode == 0 else f"tc netem: {answer.stderr.strip() or answer.returncode}"

    def pids(self) -> list[int]:
        """Processes running inside the namespace."""
        answer = _ip("netns", "pids", self.name, check=False)
        return [int(pid) for pid in answer.stdout.split()] if answer.returncode == 0 else []

    def exists(self) -> bool:
        """True while the namespace or this side's veth is still there."""
        return self.name in _ip("netns", "list").stdout.split() or \
            _ip("link", "show", self.outer_veth, check=False).returncode == 0

    def close(self, timeout_s: float = 30.0) -> None:
        """Kill the processes inside, delete the namespace and the veth pair, and wait until they are gone."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.outer_veth, check=False)
        deadline = time.monotonic() + timeout_s
        while self.exists():  # the kernel tears a namespace down asynchronously
            assert time.monotonic() < deadline, f"namespace {self.name} or veth {self.outer_veth} is still there"
            time.sleep(0.1)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _free_pair(pid: int, serial: int) -> tuple[str, str]:
    """The two host addresses of a /30 in some 10.55-254.x.0/24 that no route of this machine names.

    Picked from `pid` and `serial`, so concurrent test runs and the machine's own networks do not clash.
    """
    routes = _ip("-4", "route", "show", "table", "all").stdout
    for attempt in range(64):
        slot = (pid + attempt * 7919) % (200 * 256)
        prefix = f"10.{55 + slot // 256}.{slot % 256}."
        if prefix not in routes:
            base = (serial % 64) * 4
            return f"{prefix}{base + 1}", f"{prefix}{base + 2}"
    raise AssertionError("no free 10.x.y.0/24 for a test veth pair")

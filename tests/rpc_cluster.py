"""A TVM RPC tracker and servers on 127.0.0.1 for tests, each in its own process group, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RpcCluster:
    """Starts `python -m tvm.exec.rpc_tracker` and servers; `close()` kills every process group it started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}
        self.tracker = ""

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        path = self.log_dir / f"{name}-{len(self.procs)}.log"
        with open(path, "w") as log:
            proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
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

    def start_tracker(self, timeout_s: float = 60.0) -> str:
        """Start the tracker and wait until it accepts connections; its HOST:PORT."""
        port = free_port()
        proc = self._start("tracker", ["-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                                       "--port-end", str(port + 1), "--silent"])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "tracker exited at start-up"
                assert time.monotonic() < deadline, "tracker did not listen in time"
                time.sleep(0.1)
        self.tracker = f"127.0.0.1:{port}"
        return self.tracker

    def start_server(self, key: str, hwlat_serve: bool = False) -> subprocess.Popen:
        """Start one RPC server registered under `key` (plain TVM, or `hwlat devices serve`)."""
        port = free_port()
        if hwlat_serve:
            args = ["-m", "hwlat", "devices", "serve", "--tracker", self.tracker, "--key", key,
                    "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)]
        else:
            args = ["-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                    str(port + 1), "--tracker", self.tracker, "--key", key]
        return self._start(f"server-{key}", args)

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

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)

"""Remote profiling across a real network hop: an RPC server inside a network namespace the test creates.

The tracker listens on this side of a veth pair, the server runs in namespace ``hwlat-test-<pid>`` on the
other side (reachable only through the veth), so uploads and timings cross a network link rather than the
loopback device. Needs root and `ip netns`; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings

import pytest
from rpc_cluster import (
    NetnsLink,
    RpcCluster,
    netns_unavailable,
    remove_stale_namespaces,
)

from hwlat.devices import Device, DeviceRegistry
from hwlat.devices._rpc import connect_device, key_status, target_fingerprint
from hwlat.profilers import MeasurementProtocol, profile

pytest.importorskip("tvm")
pytest.importorskip("tornado")

QUICK = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, time_budget_s=0.3,
                            target_rel_ci=0.05)
ARCHS = [
    "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|",
]
DELAY_MS = 20


def require_netns() -> None:
    """Skip, with the reason, where this machine gives no network namespaces (CI=true runs it where it does)."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"no network namespace for this test: {reason}")


@pytest.fixture(scope="module")
def link():
    """Namespace + veth pair for the module; removed afterwards whatever happened, processes inside killed."""
    require_netns()
    netns = NetnsLink()
    try:
        yield netns.open()
    finally:
        netns.close()  # waits until the namespace and the veth are gone


@pytest.fixture(scope="module")
def served(link, tmp_path_factory):
    """A tracker on this side of the veth and `hwlat devices serve` in the namespace, started together.

    Every process started is stopped after the module, and checked to be gone.
    """
    rpc = RpcCluster(tmp_path_factory.mktemp("netns_logs"))
    try:
        rpc.start_tracker(host=link.outer_address, wait=False)
        server = rpc.start_server("netns", hwlat_serve=True, netns=link)
        rpc.wait_tracker()
        yield rpc, server
    finally:
        rpc.close()
    assert rpc.leftovers() == [], "processes of the cluster survived it"


def connect_seconds(host: str, port: int) -> float:
    """Seconds one TCP handshake with `host:port` takes."""
    started = time.perf_counter()
    socket.create_connection((host, port), timeout=10).close()
    return time.perf_counter() - started


def test_profiles_through_a_server_in_a_network_namespace(served, link, tmp_path):
    from hwlat.profilers.runtimes._tvm import _host_mcpu

    cluster, server = served

    delay_skipped = link.add_delay(DELAY_MS)  # None when the kernel has netem and the hop is now 20 ms longer
    cluster.wait_servers("netns", 1)
    assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    status = key_status(cluster.tracker, "netns")
    [address] = status.addresses
    host, port = address.rsplit(":", 1)
    assert host == link.inner_address, f"the server registered from {host}, not from inside the namespace"
    with pytest.raises(OSError):  # nothing of it on this side: every byte crosses the veth
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    if delay_skipped is None:
        assert connect_seconds(host, int(port)) >= DELAY_MS / 1000 * 0.9
    else:
        warnings.warn(f"the veth hop has no added delay: {delay_skipped}", stacklevel=1)

    target = {"kind": "llvm", "mcpu": _host_mcpu(), "num-cores": 1}
    device = Device("ns-board", "rpc", target_fingerprint(target),
                    {"tracker": cluster.tracker, "key": "netns", "target": target})
    DeviceRegistry().add(device)
    connected = connect_device(device, wait_s=30)
    assert connected.from_board and connected.status.total == 1
    result = profile(ARCHS, runtime="tvm", device="ns-board", protocol=QUICK, store=tmp_path / "m.sqlite",
                     item_timeout_s=60, connect_timeout_s=30)
    assert result.measured == len(ARCHS) and not result.failed, result.failed
    assert result.device_id == connected.device.id
    assert cluster.log(server).count("load_module") == len(ARCHS)
    assert cluster.client_connections() == [], "an RPC session or tracker connection was left open"
    cluster.kill(server)


def test_namespace_veth_and_processes_are_removed_when_the_test_fails():
    require_netns()
    netns = NetnsLink(serial=1)
    with pytest.raises(RuntimeError, match="the test failed here"), netns:
        sleeper = subprocess.Popen([*netns.exec_prefix(), "sleep", "600"], start_new_session=True)
        deadline = time.monotonic() + 10
        while sleeper.pid not in netns.pids():
            assert time.monotonic() < deadline, "the process did not appear inside the namespace"
            time.sleep(0.05)
        assert netns.exists()
        raise RuntimeError("the test failed here")
    assert sleeper.wait(timeout=10) == -9
    assert not netns.exists()


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def test_namespaces_left_by_a_dead_test_run_are_removed():
    require_netns()
    dead = subprocess.Popen(["true"])
    dead.wait()
    name, veth = f"hwlat-test-{dead.pid}", f"hwl{dead.pid}o0"
    assert ip("netns", "add", name).returncode == 0
    try:
        assert ip("link", "add", veth, "type", "veth", "peer", "name", f"hwl{dead.pid}i0").returncode == 0
        assert name in remove_stale_namespaces()
        assert name not in ip("netns", "list").stdout.split()
        assert ip("link", "show", veth).returncode != 0
    finally:
        ip("netns", "del", name)
        ip("link", "del", veth)

"""Remote profiling through real TVM RPC processes on 127.0.0.1: a tracker and servers started by the tests."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest
from rpc_cluster import RpcCluster, free_port

from hwlat._errors import HwlatError
from hwlat.devices import Device, DeviceRegistry, local_device
from hwlat.devices._rpc import key_status, target_fingerprint
from hwlat.profilers import MeasurementProtocol, profile

pytest.importorskip("tvm")
pytest.importorskip("tornado")

QUICK = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, time_budget_s=0.3,
                            target_rel_ci=0.05)
# small NB201 cells (few convolutions) so compiling and timing them takes seconds
ARCHS = [
    "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One tracker for the module; tests add servers under their own keys. Every process is killed after."""
    rpc = RpcCluster(tmp_path_factory.mktemp("rpc_logs"))
    try:
        rpc.start_tracker()
        yield rpc
    finally:
        rpc.close()
    assert rpc.leftovers() == [], "processes of the cluster survived it"


@pytest.fixture(autouse=True)
def _no_open_connections(request):
    """After each test that used the cluster, no tracker connection or RPC session of this process is open."""
    yield
    if "cluster" in request.fixturenames:
        assert request.getfixturevalue("cluster").client_connections() == [], "a connection was left open"


@pytest.fixture(scope="module")
def host_target() -> dict:
    from hwlat.profilers.runtimes._tvm import _host_mcpu

    return {"kind": "llvm", "mcpu": _host_mcpu(), "num-cores": 1}


@pytest.fixture(scope="module")
def pair(cluster):
    """Two plain TVM RPC servers under the key "pair"."""
    servers = [cluster.start_server("pair") for _ in range(2)]
    cluster.wait_servers("pair", 2)
    yield servers
    for server in servers:
        cluster.kill(server)


def register(name: str, tracker: str, key: str, target: dict, **extra: str) -> Device:
    device = Device(name=name, kind="rpc", fingerprint=target_fingerprint(target),
                    connection={"tracker": tracker, "key": key, "target": target, **extra})
    DeviceRegistry().add(device)
    return device


def rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM measurements ORDER BY id")]


def test_profiles_on_both_servers_resumes_and_matches_local(cluster, pair, host_target, tmp_path):
    db = tmp_path / "m.sqlite"
    register("pair", cluster.tracker, "pair", host_target, cc="g++")  # the linker a cross-compiling host names
    archs = ARCHS[:4]
    result = profile(archs, runtime="tvm", device="pair", protocol=QUICK, store=db)
    assert result.measured == 4 and not result.failed and result.platform == "tvm/t1/b1/untuned"
    assert all("load_module" in cluster.log(server) for server in pair), "work was not spread over both servers"

    rerun = profile(archs, runtime="tvm", device="pair", protocol=QUICK, store=db)
    assert rerun.skipped == 4 and rerun.measured == 0

    # same compiled code on the same CPU: compare one item at a time (libraries cached, so no host compile
    # and no second server competes for the 2 cores), loosely, as the machine is shared
    local = profile(archs[:2], runtime="tvm", device="local", protocol=QUICK, store=db)
    for arch in archs[:2]:
        assert profile([arch], runtime="tvm", device="pair", protocol=QUICK, store=db, tag="alone").measured == 1
    stored = rows(db)
    remote_rows = [row for row in stored if row["device_id"] == result.device_id]
    local_rows = {row["arch"]: row for row in stored if row["device_id"] == local.device_id}
    assert local.measured == 2 and len(remote_rows) == 6 and result.device_id != local.device_id
    for row in remote_rows:
        assert row["n"] >= QUICK.min_repeats and row["ci_low_ms"] <= row["median_ms"] <= row["ci_high_ms"]
        assert json.loads(row["settings"])["runtime"]["target"] == host_target
        twin = local_rows[row["arch"]] if row["arch"] in local_rows else local_rows[archs[0]]
        assert set(row) == set(twin) and row["platform"] == twin["platform"] == "tvm/t1/b1/untuned"
        assert [k for k in row if (row[k] is None) != (twin[k] is None) or type(row[k]) is not type(twin[k])
                and None not in (row[k], twin[k])] == []
        assert json.loads(row["settings"]).keys() == json.loads(twin["settings"]).keys()
        if row["tag"] == "alone":
            ratios = {stat: row[stat] / twin[stat] for stat in ("median_ms", "min_ms")}
            assert 0.5 < ratios["min_ms"] < 2.0 and 0.33 < ratios["median_ms"] < 3.0, (ratios, row, twin)
    with sqlite3.connect(db) as connection:
        kinds = dict(connection.execute("SELECT id, kind FROM devices"))
    assert kinds == {result.device_id: "rpc", local.device_id: "local"}


def test_killing_a_server_mid_run_loses_nothing(cluster, host_target, tmp_path):
    servers = [cluster.start_server("kill") for _ in range(2)]
    cluster.wait_servers("kill", 2)
    register("kill", cluster.tracker, "kill", host_target)
    db = tmp_path / "m.sqlite"
    slower = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, time_budget_s=0.5,
                                 target_rel_ci=0.001)
    outcome: dict = {}
    archs = ARCHS
    runner = threading.Thread(target=lambda: outcome.update(result=profile(
        archs, runtime="tvm", device="kill", protocol=slower, store=db)))
    runner.start()
    victim = servers[0]
    deadline = time.monotonic() + 120
    while not cluster.busy(victim):  # kill while the victim is measuring an item
        assert runner.is_alive() and time.monotonic() < deadline, "the victim server never got an item"
        time.sleep(0.02)
    cluster.kill(victim)
    runner.join(timeout=300)
    assert not runner.is_alive()
    result = outcome["result"]
    assert result.measured == len(archs) and not result.failed
    assert sorted(row["arch"] for row in rows(db)) == sorted(archs)
    sessions = sum(cluster.log(server).count("load_module") for server in servers)
    assert sessions > len(archs), "the in-flight item of the killed server was not measured again"
    cluster.kill(servers[1])


def test_a_server_joining_mid_run_gets_work(cluster, host_target, tmp_path, monkeypatch):
    monkeypatch.setattr("hwlat.profilers._remote.JOIN_POLL_S", 0.2)  # look for new servers often
    first = cluster.start_server("join")
    cluster.wait_servers("join", 1)
    register("join", cluster.tracker, "join", host_target)
    late = []

    def on_start(total: int, skipped: int) -> None:
        # the run has counted one server and sized its workers; nothing has been measured yet
        assert key_status(cluster.tracker, "join").total == 1
        late.append(cluster.start_server("join"))
        cluster.wait_servers("join", 2)

    workers = []

    def on_item(arch: str, answer: dict) -> None:
        workers.append(sum(thread.name.startswith("hwlat-remote-") for thread in threading.enumerate()))

    result = profile(ARCHS[:3], runtime="tvm", device="join", protocol=QUICK, store=tmp_path / "m.sqlite",
                     on_start=on_start, on_item=on_item)
    assert result.measured == 3 and not result.failed
    assert max(workers) == 2, f"workers alive as items finished: {workers}; one per server expected"
    assert "load_module" in cluster.log(first)
    assert "load_module" in cluster.log(late[0]), "the server that joined after the start got no item"
    for server in (first, *late):
        cluster.kill(server)


def test_item_timeout_fails_the_item_and_servers_stay_usable(cluster, pair, host_target, tmp_path):
    register("pair", cluster.tracker, "pair", host_target)
    db = tmp_path / "m.sqlite"
    endless = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, time_budget_s=60.0,
                                  target_rel_ci=1e-9, max_repeats=100000)
    started = time.monotonic()
    result = profile(ARCHS[:1], runtime="tvm", device="pair", protocol=endless, store=db, item_timeout_s=3.0)
    assert result.measured == 0 and len(result.failed) == 1
    assert "timed out after 3 s" in result.failed[0][1] and "'pair'" in result.failed[0][1]
    assert time.monotonic() - started < 50
    again = profile(ARCHS[:1], runtime="tvm", device="pair", protocol=QUICK, store=db)
    assert again.measured == 1


def test_profile_command_on_a_remote_device(hwlat, cluster, pair, host_target, tmp_path):
    register("pair", cluster.tracker, "pair", host_target)
    code, out, err = hwlat("profile", "--device", "pair", "--runtime", "tvm", "--arch", ARCHS[1], "--arch", ARCHS[2],
                           "--db", str(tmp_path / "m.sqlite"), "--item-timeout", "120", "--connect-timeout", "30",
                           "--time-budget", "0.3", "--min-repeats", "10", "--target-ci", "0.05", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["measured"] == 2 and summary["failed"] == [] and summary["platform"] == "tvm/t1/b1/untuned"
    code, _, err = hwlat("profile", "--device", "pair", "--runtime", "onnxruntime", "--arch", ARCHS[1])
    assert code != 0 and err.strip().splitlines() == [
        "error: device 'pair' is remote: profile it with the tvm runtime and without cpus"]


def test_unknown_key_is_a_clear_error_after_a_bounded_wait(cluster, host_target, tmp_path):
    register("ghost", cluster.tracker, "no-such-key", host_target)
    started = time.monotonic()
    with pytest.raises(HwlatError, match=r"device 'ghost' never answered: no RPC server with key 'no-such-key'"):
        profile(ARCHS[:1], runtime="tvm", device="ghost", protocol=QUICK, store=tmp_path / "m.sqlite",
                connect_timeout_s=2.0)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "m.sqlite").exists()


def test_unreachable_tracker_is_one_line_error(hwlat, host_target, tmp_path):
    tracker = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err = hwlat("devices", "add", "gone", "--tracker", tracker, "--key", "k", "--target",
                         json.dumps(host_target))
    assert code == 0, err
    for args in (["devices", "check", "gone", "--wait", "2"],
                 ["profile", "--device", "gone", "--runtime", "tvm", "--arch", ARCHS[0], "--db",
                  str(tmp_path / "m.sqlite"), "--connect-timeout", "2"]):
        started = time.monotonic()
        code, _, err = hwlat(*args)
        assert code != 0 and "Traceback" not in err and time.monotonic() - started < 10
        assert err.strip().splitlines() == [f"error: cannot reach RPC tracker {tracker}: Connection refused"]
    assert not (tmp_path / "m.sqlite").exists()


@pytest.mark.parametrize("tracker, target, extra, message", [
    ("127.0.0.1:9190", '{"kind": "llvm", ', [], "--target is not valid JSON"),
    ("127.0.0.1:9190", '["llvm"]', [], "--target must be a JSON object"),
    ("127.0.0.1:9190", '{"kind": "llvmx"}', [], 'Target kind "llvmx" is not defined'),
    ("127.0.0.1:9190", '{"kind": "llvm", "mcpu": 3}', [], "expected type 'str'"),
    ("localhost", '{"kind": "llvm"}', [], "RPC tracker address must be HOST:PORT"),
    ("127.0.0.1:9190", '{"kind": "llvm"}', ["--cc", "no-such-g++"], "cross compiler 'no-such-g++' not found on PATH"),
    ("127.0.0.1:9190", '{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}', [],
     "targets aarch64-linux-gnu but this host's compiler"),
])
def test_devices_add_rejects_bad_input_in_one_line(hwlat, tracker, target, extra, message):
    code, _, err = hwlat("devices", "add", "board", "--tracker", tracker, "--key", "k", "--target", target, *extra)
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert DeviceRegistry().names() == ["local"]


def test_check_reads_the_fingerprint_on_a_board_running_hwlat_serve(hwlat, cluster, host_target):
    server = cluster.start_server("served", hwlat_serve=True)
    cluster.wait_servers("served", 1)
    code, _, err = hwlat("devices", "add", "board", "--tracker", cluster.tracker, "--key", "served", "--target",
                         json.dumps(host_target))
    assert code == 0, err
    registered = DeviceRegistry().get("board")
    assert registered.fingerprint["source"] == "tvm-target"
    code, out, err = hwlat("devices", "check", "board", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["servers"] == 1 and report["fingerprint_source"] == "board"
    assert report["addresses"] == [f"127.0.0.1:{cluster.port(server)}"] and report["compiler"]
    assert report["id"] == local_device().id  # the "board" is this machine
    assert DeviceRegistry().get("board").id == local_device().id
    helpers = psutil.Process(server.pid).children(recursive=True)
    assert helpers, "the server runs TVM's RPC loop in a worker process"
    server.send_signal(signal.SIGTERM)  # stopping `hwlat devices serve` stops its worker too
    server.wait(timeout=30)
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive, f"orphaned: {[p.cmdline() for p in alive]}"

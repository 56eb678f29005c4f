"""Device fingerprint, stable id, registry and `hwlat devices` command."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest
from typer.testing import CliRunner

from hwlat._errors import HwlatError
from hwlat.cli import _devices
from hwlat.devices import Device, DeviceRegistry, device_id, local_device, read_fingerprint

KEYS = {"cpu_model", "cpu_vendor", "cpu_arch", "cpu_flags", "physical_cores", "logical_cores", "caches",
        "memory_bytes", "os", "os_release", "kernel", "libc", "python", "cpu_freq_mhz", "scaling_governor",
        "cpu_affinity", "gpu"}


def test_fingerprint_keys_are_present_and_sane():
    fingerprint = read_fingerprint()
    assert set(fingerprint) == KEYS
    assert fingerprint["cpu_model"] and fingerprint["cpu_model"] != "unknown"
    assert fingerprint["logical_cores"] == psutil.cpu_count() >= 1
    assert 1 <= (fingerprint["physical_cores"] or 1) <= fingerprint["logical_cores"]
    assert fingerprint["memory_bytes"] > 2**28
    assert set(fingerprint["cpu_freq_mhz"]) == {"current", "min", "max"}
    assert set(fingerprint["cpu_affinity"]) <= set(range(fingerprint["logical_cores"]))
    assert all(isinstance(size, int) and size > 0 for size in fingerprint["caches"].values())
    assert fingerprint["gpu"] is None or {"name", "count"} <= set(fingerprint["gpu"])
    json.dumps(fingerprint)  # serialisable as is


def test_id_is_stable_and_ignores_frequency_affinity_and_software():
    fingerprint = read_fingerprint()
    assert device_id(fingerprint) == device_id(read_fingerprint()) == local_device().id
    changed = {**fingerprint, "cpu_freq_mhz": {"current": 1.0, "min": 1.0, "max": 9999.0},
               "scaling_governor": "powersave", "cpu_affinity": [0], "kernel": "0.0", "python": "3.99",
               "memory_bytes": fingerprint["memory_bytes"] + 2**20}
    assert device_id(changed) == device_id(fingerprint)
    assert device_id({**fingerprint, "logical_cores": 1024}) != device_id(fingerprint)
    assert device_id({**fingerprint, "gpu": {"name": "NVIDIA A100", "count": 1}}) != device_id(fingerprint)


def test_another_cpu_generation_behind_the_same_model_name_is_another_device():
    """A VM that names its CPU by family only ("AMD EPYC") can come back on another generation: the cache sizes and
    ISA extensions tell them apart (both seen on hwlat's development VM, which also ran 1.8x faster)."""
    older = {"cpu_model": "AMD EPYC", "cpu_arch": "x86_64", "physical_cores": 2, "logical_cores": 2,
             "memory_bytes": 24 * 2**30, "gpu": None, "cpu_flags": ["avx2", "avx512f"],
             "caches": {"l1d": 32768, "l1i": 32768, "l2": 1048576, "l3": 33554432}}
    newer_caches = {**older, "caches": {**older["caches"], "l1d": 49152}}
    newer_isa = {**older, "cpu_flags": ["avx2", "avx512f", "avx_vnni"]}
    assert len({device_id(older), device_id(newer_caches), device_id(newer_isa)}) == 3
    assert device_id({**older, "cpu_flags": ["avx512f", "avx2"]}) == device_id(older)  # order does not matter
    assert device_id(older).startswith("cpu-amd-epyc-2c-")


def test_id_is_a_readable_slug_with_a_hash():
    fingerprint = {"cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cpu_arch": "x86_64",
                   "physical_cores": 4, "logical_cores": 8, "memory_bytes": 16 * 2**30, "gpu": None}
    assert device_id(fingerprint).startswith("cpu-intel-xeon-platinum-8375c-8c-")
    assert len(device_id(fingerprint).rsplit("-", 1)[1]) == 8


def test_registry_add_get_remove_persist(tmp_path):
    path = tmp_path / "devices.json"
    board = Device(name="pi", kind="rpc", fingerprint={"cpu_model": "Cortex-A72", "logical_cores": 4},
                   connection={"tracker": "localhost:9190", "key": "pi4"})
    registry = DeviceRegistry(path)
    assert registry.names() == ["local"]
    registry.add(board)
    assert DeviceRegistry(path).get("pi") == board
    assert DeviceRegistry(path).names() == ["local", "pi"]
    assert [device.name for device in DeviceRegistry(path)] == ["local", "pi"]
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"
    registry.remove("pi")
    assert DeviceRegistry(path).names() == ["local"]


def test_registered_local_device_keeps_its_fingerprint_and_local_is_live(tmp_path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    old = {**read_fingerprint(), "kernel": "registered-kernel"}
    registry.add(Device(name="desk", kind="local", fingerprint=old))
    assert registry.get("desk").fingerprint["kernel"] == "registered-kernel"
    assert registry.get("local").fingerprint["kernel"] != "registered-kernel"
    assert registry.get("desk").id == registry.get("local").id


def test_default_registry_lives_in_hwlat_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLAT_HOME", str(tmp_path / "home"))
    DeviceRegistry().add(Device(name="box", kind="local", fingerprint={"cpu_model": "x"}))
    assert (tmp_path / "home" / "devices.json").exists()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"devices": []}', '{"devices": {"a": {"kind": "local"}}}',
                                     '{"devices": {"a": {"kind": "cloud", "fingerprint": {}}}}'])
def test_malformed_registry_is_a_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / "devices.json"
    path.write_text(content)
    with pytest.raises(HwlatError, match="devices.json") as error:
        DeviceRegistry(path).get("a")
    assert "\n" not in str(error.value)


def test_unknown_name_lists_known_names(tmp_path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.add(Device(name="pi", kind="rpc", fingerprint={}))
    with pytest.raises(HwlatError, match="unknown device 'jetson'; known devices: local, pi"):
        registry.get("jetson")
    with pytest.raises(HwlatError, match="reserved"):
        registry.add(Device(name="local", kind="local", fingerprint={}))
    with pytest.raises(HwlatError, match="not a registered device"):
        registry.remove("jetson")


def test_cli_show_and_list_json():
    DeviceRegistry().add(Device(name="pi", kind="rpc", fingerprint={"cpu_model": "Cortex-A72"}))
    runner = CliRunner()
    shown = runner.invoke(_devices.app, ["show", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["name"] == "local" and data["id"] == local_device().id and set(data["fingerprint"]) == KEYS
    table = runner.invoke(_devices.app, ["show", "pi"])
    assert table.exit_code == 0 and "Cortex-A72" in table.stdout
    listed = runner.invoke(_devices.app, ["list", "--json"])
    assert [device["name"] for device in json.loads(listed.stdout)] == ["local", "pi"]
    assert "pi" in runner.invoke(_devices.app, ["list"]).stdout


def test_unknown_device_through_the_entry_point_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "hwlat", "devices", "show", "jetson"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == "error: unknown device 'jetson'; known devices: local"

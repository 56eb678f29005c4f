"""`hwlat devices`: what this machine and the registered devices are."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hwlat._errors import HwlatError
from hwlat.devices import Device, DeviceRegistry

app = typer.Typer(no_args_is_help=True, help="Show, register and reach devices (this machine and remote boards).")


@app.command()
def show(
    name: str = typer.Argument("local", help="Registered device name; 'local' is this machine now."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with name, id, kind and fingerprint."),
) -> None:
    """Show the fingerprint of a device."""
    device = DeviceRegistry().get(name)
    if as_json:
        typer.echo(json.dumps(device.as_dict(), sort_keys=True))
        return
    table = Table(title=f"{device.name} ({device.kind}): {device.id}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in _flatten({"connection": device.connection, **device.fingerprint}).items():
        table.add_row(key, _format(key, value))
    Console().print(table)


@app.command("list")
def list_devices(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of devices."),
) -> None:
    """List the known devices: 'local' and the registered ones."""
    devices = list(DeviceRegistry())
    if as_json:
        typer.echo(json.dumps([device.as_dict() for device in devices], sort_keys=True))
        return
    table = Table("name", "kind", "id", "cpu", "gpu")
    for device in devices:
        table.add_row(device.name, device.kind, device.id, *_hardware(device))
    Console().print(table)


def _hardware(device: Device) -> tuple[str, str]:
    gpu = device.fingerprint.get("gpu")
    cores = device.fingerprint.get("logical_cores")
    cpu = f"{device.fingerprint.get('cpu_model', '?')} ({cores} cores)"
    return cpu, f"{gpu['count']}x {gpu['name']}" if gpu else "-"


def _flatten(data: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted keys, e.g. ``caches.l1d``; empty dicts are left out."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif value != {}:
            flat[f"{prefix}{key}"] = value
    return flat


def _format(key: str, value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "-"
    if isinstance(value, int) and (key.endswith("memory_bytes") or key.startswith("caches.")):
        return _human_bytes(value)
    return str(value)


def _human_bytes(size: int) -> str:
    value, unit = float(size), 0
    while value >= 1024 and unit < 3:
        value, unit = value / 1024, unit + 1
    return f"{value:.3g} {('B', 'KiB', 'MiB', 'GiB')[unit]}"


@app.command()
def add(
    name: str = typer.Argument(..., help="Name to register the remote device under."),
    tracker: str = typer.Option(..., help="Address of the TVM RPC tracker, HOST:PORT."),
    key: str = typer.Option(..., help="Key the device's RPC servers register under."),
    target: str = typer.Option(..., help='TVM target as JSON, e.g. \'{"kind": "llvm", "mtriple": '
                                         '"aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4}\'.'),
    cc: str = typer.Option(None, help="Cross compiler linking libraries for the board, e.g. aarch64-linux-gnu-gcc "
                                      "(default: the host's, for boards of the host's architecture)."),
) -> None:
    """Register a remote device reached through a TVM RPC tracker (no network access: see `check`).

    The compiler that will link its libraries must build for the target's mtriple (checked now).
    """
    from hwlat.devices._cross import link_compiler
    from hwlat.devices._rpc import parse_tracker, target_fingerprint
    from hwlat.profilers.runtimes._tvm import tvm_target

    parse_tracker(tracker)
    if not key.strip():
        raise HwlatError("--key must not be empty")
    spec = _parse_target(target)
    tvm_target(spec, threads=spec.get("num-cores", 1))
    link_compiler(spec, cc, name)
    connection = {"tracker": tracker, "key": key, "target": spec, **({"cc": cc} if cc else {})}
    device = Device(name=name, kind="rpc", fingerprint=target_fingerprint(spec), connection=connection)
    DeviceRegistry().add(device)
    typer.echo(f"registered {name!r} ({device.id}): key {key!r} at tracker {tracker}; "
               f"run `hwlat devices check {name}` to reach it")


@app.command()
def check(
    name: str = typer.Argument(..., help="A registered remote device."),
    wait: float = typer.Option(10.0, help="Seconds to wait for a server with the device's key."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Reach a remote device: tracker, servers of its key, fingerprint (from the board where possible), compiler."""
    from hwlat.devices._cross import link_compiler
    from hwlat.devices._rpc import connect_device, rpc_address

    registry = DeviceRegistry()
    device = registry.get(name)
    if device.kind != "rpc":
        raise HwlatError(f"device {name!r} is {device.kind!r}: only remote (rpc) devices can be checked")
    tracker, key = rpc_address(device)
    live, status, from_board = connect_device(device, wait)
    compiler = link_compiler(device.connection.get("target") or {}, device.connection.get("cc"), name)
    if from_board and live.fingerprint != device.fingerprint:
        registry.add(live)  # profiling records the board's own fingerprint too
    source = "board" if from_board else "TVM target"
    if as_json:
        typer.echo(json.dumps({"name": name, "tracker": tracker, "key": key, "servers": status.total,
                               "free": status.free, "addresses": list(status.addresses),
                               "fingerprint_source": source, "id": live.id, "compiler": compiler}, sort_keys=True))
        return
    typer.echo(f"{name}: tracker {tracker} reachable; key {key!r}: {status.total} server(s) "
               f"({', '.join(status.addresses)}), {status.free} free; "
               f"fingerprint from the {source}: {live.id}; libraries linked with {compiler}")


@app.command()
def serve(
    tracker: str = typer.Option(..., help="Address of the TVM RPC tracker, HOST:PORT."),
    key: str = typer.Option(..., help="Key to register under (one key per kind of board)."),
    host: str = typer.Option("0.0.0.0", help="Address to listen on."),
    port: int = typer.Option(9090, help="First port to try."),
    port_end: int = typer.Option(9199, help="Ports up to this one are tried."),
) -> None:
    """Run on a board: a TVM RPC server that also reports this machine's fingerprint to `hwlat`."""
    from hwlat.devices._rpc import serve as run_server

    run_server(tracker, key, host=host, port=port, port_end=port_end)


def _parse_target(text: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HwlatError(f"--target is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(spec, dict):
        raise HwlatError(f'--target must be a JSON object such as {{"kind": "llvm"}}, got {text!r}')
    return spec

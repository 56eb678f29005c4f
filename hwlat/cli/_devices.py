"""`hwlat devices`: what this machine and the registered devices are."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hwlat.devices import Device, DeviceRegistry

app = typer.Typer(no_args_is_help=True, help="Show this machine and the registered devices.")


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

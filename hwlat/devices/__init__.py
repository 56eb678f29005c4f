"""Devices: what a machine is (fingerprint), its stable id, and a registry of named devices."""

from hwlat.devices._fingerprint import ISA_FLAGS, device_id, read_fingerprint
from hwlat.devices._registry import Device, DeviceRegistry, local_device

__all__ = ["ISA_FLAGS", "Device", "DeviceRegistry", "device_id", "local_device", "read_fingerprint"]

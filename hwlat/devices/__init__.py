"""Devices: what a machine is (fingerprint), its stable id, a registry of named devices, and its power readings."""

from hwlat.devices._energy import CounterMeter, EnergyMeter, SampledPowerMeter, find_energy_meter
from hwlat.devices._fingerprint import ISA_FLAGS, device_id, read_fingerprint
from hwlat.devices._registry import Device, DeviceRegistry, local_device

__all__ = ["ISA_FLAGS", "CounterMeter", "Device", "DeviceRegistry", "EnergyMeter", "SampledPowerMeter", "device_id",
           "find_energy_meter", "local_device", "read_fingerprint"]

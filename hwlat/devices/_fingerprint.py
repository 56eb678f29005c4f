"""Read what this machine is (CPU, caches, memory, OS, GPU) and derive a stable device id from it.

Keys of the fingerprint returned by :func:`read_fingerprint` (values are ``None`` when unreadable):

- ``cpu_model`` (str), ``cpu_vendor`` (str), ``cpu_arch`` (str, e.g. ``x86_64``, ``aarch64``)
- ``cpu_flags`` (sorted list of the ISA extensions that matter for inference kernels, see ``ISA_FLAGS``)
- ``physical_cores``, ``logical_cores`` (int, whole machine, not this process's affinity)
- ``caches`` (dict ``l1d``, ``l1i``, ``l2``, ``l3``: bytes per cache instance)
- ``memory_bytes`` (int, total RAM)
- ``os``, ``os_release``, ``kernel``, ``libc``, ``python`` (str)
- ``cpu_freq_mhz`` (dict ``current``, ``min``, ``max``), ``scaling_governor`` (str)
- ``cpu_affinity`` (sorted list of the cores this process may run on)
- ``gpu``: ``None`` or dict ``name``, ``count``, ``compute_capability``, ``memory_bytes``,
  ``cuda_version``, ``driver_version``

Only ``cpu_model``, ``cpu_arch``, ``cpu_flags``, ``caches``, the core counts, memory in GiB and the GPU name and
count enter the device id: frequency, governor, affinity, kernel and library versions may change between runs on
the same machine, so they are recorded with every measurement but never change which device it belongs to. The ISA
extensions and cache sizes are in because a VM may name its CPU only by family ("AMD EPYC") and run on another
generation after it is recreated: hwlat's development VM came back with 48 KiB instead of 32 KiB of L1d, AVX-VNNI
and 1.8x the speed, under the same model name (ids written before this rule lack both keys).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path

import psutil

#: ISA extensions reported in ``cpu_flags`` when present (x86 names, then Arm names).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme",
)

_SYS_CPU = Path("/sys/devices/system/cpu")
_CACHE_NAMES = {("1", "Data"): "l1d", ("1", "Instruction"): "l1i", ("2", "Unified"): "l2", ("3", "Unified"): "l3"}
_FLAG_ALIASES = {"avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avxvnni": "avx_vnni"}


def read_fingerprint() -> dict:
    """Describe this machine as a JSON-serialisable dict (see the module docstring for the keys)."""
    cpu = _read_proc_cpuinfo() or _read_py_cpuinfo()
    return {
        "cpu_model": cpu.get("cpu_model") or platform.processor() or "unknown",
        "cpu_vendor": cpu.get("cpu_vendor"),
        "cpu_arch": platform.machine().lower() or "unknown",
        "cpu_flags": _relevant_flags(cpu.get("flags", ())),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "caches": _read_sys_caches() or cpu.get("caches") or {},
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.system(),
        "os_release": _os_release(),
        "kernel": platform.release(),
        "libc": " ".join(part for part in platform.libc_ver() if part) or None,
        "python": platform.python_version(),
        "cpu_freq_mhz": _cpu_freq_mhz(),
        "scaling_governor": _read_text(_SYS_CPU / "cpu0" / "cpufreq" / "scaling_governor"),
        "cpu_affinity": _cpu_affinity(),
        "gpu": _read_gpu(),
    }


def device_id(fingerprint: dict) -> str:
    """Stable id of the hardware a fingerprint describes, e.g. ``cpu-amd-epyc-2c-1a2b3c4d``."""
    gpu = fingerprint.get("gpu") or {}
    memory = fingerprint.get("memory_bytes")
    stable = {
        "cpu_model": fingerprint.get("cpu_model"),
        "cpu_arch": fingerprint.get("cpu_arch"),
        "cpu_flags": sorted(fingerprint.get("cpu_flags") or []),
        "caches": fingerprint.get("caches") or {},
        "physical_cores": fingerprint.get("physical_cores"),
        "logical_cores": fingerprint.get("logical_cores"),
        "memory_gib": round(memory / 2**30) if memory else None,
        "gpu_name": gpu.get("name"),
        "gpu_count": gpu.get("count"),
    }
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:8]
    slug = "cpu-" + _slug(stable["cpu_model"] or "unknown")
    if stable["logical_cores"]:
        slug += f"-{stable['logical_cores']}c"
    if stable["gpu_name"]:
        slug += f"-{stable['gpu_count']}x-" + _slug(stable["gpu_name"])
    return f"{slug}-{digest}"


def _slug(text: str) -> str:
    """Lower-case words of a model name without trademarks, clock speed or filler words."""
    text = re.sub(r"\((r|tm|c)\)|@.*$|\b(cpu|processor|\d+-core)\b", " ", text.lower())
    return "-".join(re.findall(r"[a-z0-9]+", text))[:40].strip("-") or "unknown"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _read_proc_cpuinfo() -> dict:
    """Model, vendor and flags of the first processor from /proc/cpuinfo (Linux, x86 and Arm)."""
    text = _read_text(Path("/proc/cpuinfo"))
    if not text:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    board = _read_text(Path("/sys/firmware/devicetree/base/model"))  # e.g. a Raspberry Pi or Jetson
    arm_part = f"{fields.get('cpu implementer', 'arm')} part {fields['cpu part']}" if "cpu part" in fields else None
    model = (fields.get("model name") or fields.get("cpu model") or fields.get("hardware")
             or (board or "").rstrip("\x00") or arm_part)
    return {
        "cpu_model": model,
        "cpu_vendor": fields.get("vendor_id") or fields.get("cpu implementer"),
        "flags": (fields.get("flags") or fields.get("features") or "").split(),
    }


def _read_py_cpuinfo() -> dict:
    """The same facts from py-cpuinfo (slow: only used where there is no /proc/cpuinfo)."""
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception:  # py-cpuinfo probes the CPU in ways that can fail on exotic systems  # noqa: BLE001
        return {}
    caches = {"l1d": info.get("l1_data_cache_size"), "l1i": info.get("l1_instruction_cache_size"),
              "l2": info.get("l2_cache_size"), "l3": info.get("l3_cache_size")}
    return {"cpu_model": info.get("brand_raw"), "cpu_vendor": info.get("vendor_id_raw"),
            "flags": info.get("flags", []), "caches": {k: v for k, v in caches.items() if isinstance(v, int)}}


def _relevant_flags(flags) -> list[str]:
    present = {_FLAG_ALIASES.get(flag.lower(), flag.lower()) for flag in flags}
    if "asimd" in present:  # AArch64 reports NEON as Advanced SIMD
        present.add("neon")
    return sorted(present.intersection(ISA_FLAGS))


def _read_sys_caches() -> dict:
    """Cache sizes in bytes of cpu0 from sysfs, e.g. ``{"l1d": 32768, ...}``."""
    caches = {}
    for index in sorted((_SYS_CPU / "cpu0" / "cache").glob("index*")):
        name = _CACHE_NAMES.get((_read_text(index / "level"), _read_text(index / "type")))
        size = _parse_size(_read_text(index / "size"))
        if name and size:
            caches[name] = size
    return caches


def _parse_size(text: str | None) -> int | None:
    match = re.fullmatch(r"(\d+)\s*([KMG]?)B?", text or "", re.IGNORECASE)
    if not match:
        return None
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def _os_release() -> str | None:
    if sys.platform.startswith("linux"):
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME")
        except OSError:
            return None
    return platform.version() or None


def _cpu_freq_mhz() -> dict:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    if freq is None:
        return {"current": None, "min": None, "max": None}
    return {name: round(value, 1) if value else None
            for name, value in (("current", freq.current), ("min", freq.min), ("max", freq.max))}


def _cpu_affinity() -> list[int] | None:
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, OSError, psutil.Error):  # not available on macOS
        return None


def _may_have_gpu() -> bool:
    """Cheap check that avoids importing torch on machines without GPU device nodes."""
    if "torch" in sys.modules:
        return True
    if sys.platform.startswith("linux"):
        return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg"))
    return sys.platform != "darwin"


def _read_gpu() -> dict | None:
    """First CUDA/ROCm GPU seen by torch, or None (torch is imported only here, and only when useful)."""
    if not _may_have_gpu():
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_bytes": int(props.total_memory),
            "cuda_version": torch.version.cuda or getattr(torch.version, "hip", None),
            "driver_version": _nvidia_driver_version(),
        }
    except Exception:  # a broken CUDA install must not prevent describing the CPU  # noqa: BLE001
        return None


def _nvidia_driver_version() -> str | None:
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", _read_text(Path("/proc/driver/nvidia/version")) or "")
    return match.group(1) if match else None

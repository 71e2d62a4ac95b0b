"""The device a stage computes on, checked before any work, and what it computes fast."""

from pathlib import Path

import torch

from aevae.errors import ConfigError


def check_accelerator(accelerator: str) -> None:
    """Raise ConfigError (one line) when a GPU is asked for and none is usable."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator: {accelerator!r} asks for a GPU, but no CUDA device is usable here (use trainer=cpu)")


def check_device(key: str, device: str) -> torch.device:
    """The torch device named by config `key`; ConfigError when it is CUDA and none is usable."""
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {device!r} asks for a GPU, but no CUDA device is usable here (use {key}=cpu)")
    return resolved


def describe(accelerator: str) -> str:
    """The device a stage ran on, in words: the CUDA device's name, or `cpu (<n> threads)`."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 BF16 or AMX; Arm's BF16 extension


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 matrix products natively (a flag of `NATIVE_BF16_FLAGS` in
    `cpuinfo`'s flags or features); False where that cannot be read. Without it, torch emulates
    bf16 and autocast makes training slower, not faster."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    words = {word for row in text.splitlines() if row.startswith(("flags", "Features")) for word in row.split(":", 1)[-1].split()}
    return bool(words & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, accelerator: str) -> str:
    """`trainer.precision` as Lightning takes it: `auto` is bf16-mixed where the device computes
    bf16 natively (a CUDA device that supports it, or a CPU with `native_bf16`), else 32-true."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    native = torch.cuda.is_bf16_supported() if on_gpu else native_bf16()
    return "bf16-mixed" if native else "32-true"

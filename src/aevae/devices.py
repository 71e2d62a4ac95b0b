"""The device a stage computes on, checked before any work."""

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

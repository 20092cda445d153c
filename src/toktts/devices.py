"""Where and how torch runs: the device, the precision context and the thread count, each
resolved once and checked, for inference, training benchmarks and the CLI."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from typing import Iterator

import torch

from toktts.errors import TokttsError


def check_threads(n, name: str = "threads") -> int | None:
    """A thread count (None: the default) or a TokttsError naming `name` (e.g. "--threads")."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise TokttsError(f"{name} must be >= 1, got {n!r}")
    return n


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """A usable torch device: `device` ("cpu", "cuda", "cuda:1", "mps"), checked, or cuda if
    there is one, else cpu."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TokttsError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TokttsError(f"device {device!r} asked for, but this torch sees no CUDA GPU; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TokttsError(f"device {device!r}: there are {torch.cuda.device_count()} GPUs; use cuda:0 or another")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise TokttsError(f"device {device!r} asked for, but Apple's MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise TokttsError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run torch on `n` intra-op threads inside the block (None: leave it as it is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def autocast(device: torch.device, precision: str):
    """bf16 autocast is the fast path on AMX CPUs and on GPUs; fp32 runs without it."""
    if precision in ("fp32", "int8"):  # int8: quantized layers, the rest in fp32
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" and device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def keep_freed_memory() -> bool:
    """Keep the memory freed tensors held inside the process (training on a CPU).

    glibc gives allocations over 32 MB, and past a threshold the freed top of its heap, back to
    the kernel; a training step frees and allocates the same large activations (the guided
    layers' attention weights, the logits) every step, so each step touches them as new pages,
    and a new page costs a fault: ~65,000 a step of ljspeech_ex_small, 0.1-0.15 s of its ~2.2
    (46 MB allocated and filled: 28 ms fresh, 2.4 ms reused; benchmarks/RESULTS.md). With mmap
    and trimming off, the process keeps its peak instead. Linux with glibc only; returns whether
    it was applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
    # the largest trim threshold mallopt takes (an int): 2 GB of free heap top is kept
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))

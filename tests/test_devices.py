"""toktts.devices.keep_freed_memory: a training process keeps the memory its freed tensors held,
so the next step's tensors of the same size touch no new pages."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from toktts.devices import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(20):  # steps that make and free the same large activations, as training does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    xs = [torch.ones(n) for n in (16_000_000, 10_000_000, 2_000_000, 12_000_000)]
    del xs
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[-5:]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_freed_memory_is_reused_without_new_page_faults():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    # by default glibc maps each block over 32 MB anew: ~39,000 faults of 4 KB pages a step
    assert faults("default") > 1000
    assert faults("keep") < 100  # the heap grows to the steps' peak over a few steps (~8 here), then stays

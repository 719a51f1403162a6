"""Keeps freed host memory in the process, so that a step's buffers need no page faults.

XLA:CPU allocates a program's temporary buffer at every execution and frees it
afterwards (725 MiB for SegNet's train step at batch 8 and 128x128). glibc's
malloc serves a block that large with a fresh `mmap`, also from the arenas of
XLA's worker threads, and unmaps it on `free`: the kernel zero-fills every page
again on first touch, step after step. On a 2-core CPU that was 252,000 page
faults and 0.40 s of system CPU time per SegNet step, 18% of the step's CPU
time (experiments/benchmarks/page_faults_segnet_b8_128.log).

`retain_freed_memory()` sets three glibc malloc parameters, process-wide:

- `M_ARENA_MAX` = 1: every thread allocates from the main heap (threads' own
  arenas would still `mmap` blocks larger than an arena);
- `M_MMAP_MAX` = 0: no block is served by its own `mmap`;
- `M_TRIM_THRESHOLD` = -1 (stored by glibc as the largest size_t): freed memory
  at the top of the heap is never given back.

A freed buffer then stays mapped and the next step reuses it; now and then
small allocations split a freed block and the heap grows by fresh pages once
more. The prices: the process holds on to its memory until it exits, as a
caching allocator does (33% to 56% more resident memory for SegNet and U-Net
in the page-fault logs); and XLA's compiler threads, which allocate
often, now share one arena's lock, so each compilation takes longer
(SegNet's train step: 5.8 s instead of 4.3,
experiments/benchmarks/page_faults_segnet_b8_128.log). The step time saved
repays that within 5 to 8 steps, so training (`segjax.main`) and the
benchmark (`segjax.benchmark`) keep memory; `segjax.evaluate` and
`segjax.predict`, which compile more than they run, do not. The arena setting
only reaches threads that have not allocated yet, so this must run first
thing in a program, before JAX starts its backend.

Those two call `configure()`, which does this only where the computation runs
on the CPU: on a GPU or TPU host the step's buffers live in device memory, and
one malloc arena for every thread of a host feeding several devices is a cost
without the gain. The environment variable `SEGJAX_HOST_MEMORY` chooses:
`auto` (the default: retain when JAX will run on the CPU), `retain` or
`release` (glibc's defaults). Elsewhere than Linux with glibc there is nothing
to set. Where malloc is replaced by LD_PRELOAD
(tcmalloc, jemalloc: they cache freed memory themselves) the settings reach
glibc's unused malloc and change nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# From glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
ENVIRONMENT_VARIABLE = "SEGJAX_HOST_MEMORY"
CHOICES = ("auto", "retain", "release")
# Device files of accelerators JAX can drive: NVIDIA, AMD (ROCm), TPU (older
# TPU VMs expose /dev/accel*, newer ones VFIO groups).
_ACCELERATOR_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/accel0", "/dev/vfio/0")


def configure() -> bool:
  """`retain_freed_memory()` as $SEGJAX_HOST_MEMORY says (see above); True if set."""
  choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
  if choice not in CHOICES:
    raise ValueError(f"environment variable {ENVIRONMENT_VARIABLE}={choice!r}: expected one of "
                     f"{', '.join(CHOICES)}")
  if choice == "release" or (choice == "auto" and not computation_on_cpu()):
    return False
  return retain_freed_memory()


def computation_on_cpu() -> bool:
  """Whether JAX will compute on the CPU, decided before JAX starts (it must be).

  $JAX_PLATFORMS (or $JAX_PLATFORM_NAME) names the platform when set; else JAX
  uses an accelerator where its plugin (a `jax_plugins` module, or libtpu) is
  installed and the device is present.
  """
  platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME")
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  has_device = any(os.path.exists(path) for path in _ACCELERATOR_DEVICE_FILES)
  return not (has_device and _accelerator_plugin_installed())


def _accelerator_plugin_installed() -> bool:
  """A PJRT plugin JAX would load (CUDA, ROCm, ...), or libtpu."""
  import importlib.metadata
  import importlib.util
  if importlib.util.find_spec("libtpu") is not None:
    return True
  if importlib.metadata.entry_points(group="jax_plugins"):
    return True
  try:
    return importlib.util.find_spec("jax_plugins") is not None
  except (ImportError, ValueError):
    return False


def retain_freed_memory() -> bool:
  """Sets the malloc parameters above; False where the C library is not glibc."""
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)

"""Peak matrix FLOP/s of common accelerators, for model FLOP utilisation (MFU).

Dense (no sparsity) figures per chip from the vendors' datasheets, in TFLOP/s:

| device (JAX `device_kind`)        | bfloat16 | TF32  | float32 (no tensor cores) |
|-----------------------------------|---------:|------:|--------------------------:|
| NVIDIA H100 SXM ("H100 80GB HBM3")|    989.5 | 494.7 |                      67.0 |
| NVIDIA H100 PCIe                  |    756.5 | 378.0 |                      51.0 |
| NVIDIA H100 NVL                   |    835.5 | 417.5 |                      60.0 |
| NVIDIA H200 (SXM)                 |    989.5 | 494.7 |                      67.0 |
| NVIDIA H200 NVL                   |    835.5 | 417.5 |                      60.0 |
| NVIDIA A100 (SXM4 and PCIe)       |    312.0 | 156.0 |                      19.5 |
| NVIDIA L4                         |    121.0 |  60.0 |                      30.3 |
| Google TPU v4                     |    275.0 |     - |                         - |
| Google TPU v5e ("TPU v5 lite")    |    197.0 |     - |                         - |
| Google TPU v5p ("TPU v5")         |    459.0 |     - |                         - |
| Google TPU v6e ("TPU v6 lite")    |    918.0 |     - |                         - |

NVIDIA lists tensor-core rates "with sparsity"; the dense rates here are half
of those. A float32 program runs its matrix products at XLA's default
precision: TF32 on NVIDIA GPUs since Ampere, one bfloat16 pass on TPUs. Its
MFU is therefore taken against the TF32 (GPU) or bfloat16 (TPU) peak, and
against the float32 one where `jax_default_matmul_precision` is "highest".
"""

from __future__ import annotations

import re

TERA = 1e12
# (pattern over the lower-cased device kind, {precision: TFLOP/s}); the first match counts.
PEAK_TFLOPS = (
    (r"h100.*pcie", {"bfloat16": 756.5, "tf32": 378.0, "float32": 51.0}),
    (r"h100.*nvl", {"bfloat16": 835.5, "tf32": 417.5, "float32": 60.0}),
    (r"h200.*nvl", {"bfloat16": 835.5, "tf32": 417.5, "float32": 60.0}),
    (r"h100|h200", {"bfloat16": 989.5, "tf32": 494.7, "float32": 67.0}),
    (r"a100", {"bfloat16": 312.0, "tf32": 156.0, "float32": 19.5}),
    (r"\bl4\b", {"bfloat16": 121.0, "tf32": 60.0, "float32": 30.3}),
    (r"tpu v4", {"bfloat16": 275.0}),
    (r"tpu v5 ?(lite|e\b)", {"bfloat16": 197.0}),
    (r"tpu v5", {"bfloat16": 459.0}),
    (r"tpu v6 ?(lite|e\b)", {"bfloat16": 918.0}),
)


def peak_precision(platform: str, dtype: str, matmul_precision: str | None = None) -> str:
  """The precision whose peak a program of `dtype` runs its matrix products at."""
  if dtype == "bfloat16":
    return "bfloat16"
  if (matmul_precision or "").lower() in ("highest", "float32"):
    return "float32"
  return "bfloat16" if platform == "tpu" else "tf32"


def peak_flops(device_kind: str, precision: str) -> float | None:
  """FLOP/s of one `device_kind` chip at `precision`; None when not in the table."""
  kind = device_kind.lower()
  for pattern, peaks in PEAK_TFLOPS:
    if re.search(pattern, kind):
      return peaks[precision] * TERA if precision in peaks else None
  return None

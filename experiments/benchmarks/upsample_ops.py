"""U-Net's 2x2 stride-2 transposed convolutions on XLA:CPU, forward + backward
(gradients of input and kernel), in three formulations and PyTorch's.

  python experiments/benchmarks/upsample_ops.py [--batch 4] [--size 128] [--repeats 15]

  conv_gather  the four phases as the output channels of one 1x1 convolution,
               their kernel picked by a gather (segjax before this change).
  conv_1x1     the same convolution, the kernel picked by slices
               (`layers._packed_phases`).
  matmul       one (N H W, C_in) x (C_in, 4 C_out) matrix product
               (`layers._matmul_phases`, what `layers.conv_transpose` runs).
  torch        torch.nn.ConvTranspose2d(kernel_size=2, stride=2).

Every formulation is checked against lax.conv_transpose first, gradients included.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import op_timing  # noqa: E402
from segjax.models import convolution, layers  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")


def conv_gather_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision):
  """`layers._matmul_phases`' result as segjax computed it before: a gather and a 1x1 conv."""
  _, _, cin, cout = kernel.shape
  (window_h, sh), (window_w, sw) = taps_h.shape, taps_w.shape
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  phase_kernel = padded[taps_h[:, :, None, None], taps_w[None, None, :, :]]
  phase_kernel = phase_kernel.transpose(0, 2, 4, 1, 3, 5).reshape(
      window_h, window_w, cin, sh * sw * cout)
  y = convolution.conv_general_dilated(x, phase_kernel, (1, 1), (pad_h, pad_w),
                                       dimension_numbers=DN, precision=precision)
  return layers._split_phases(y, (sh, sw))


def _with_phases(phases):
  def run(x, kernel):
    original = layers._matmul_phases
    layers._matmul_phases = phases
    try:
      return layers.conv_transpose(x, kernel, (2, 2))
    finally:
      layers._matmul_phases = original
  return run


FORMULATIONS = {
    "conv_gather": _with_phases(conv_gather_phases),
    "conv_1x1": _with_phases(layers._packed_phases),
    "matmul": lambda x, k: layers.conv_transpose(x, k, (2, 2)),
}


def _reference(x, kernel):
  return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DN)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  import torch
  print(f"jax {jax.__version__}, torch {torch.__version__}, load average {os.getloadavg()}")
  print("ms per forward + backward (input and kernel gradients), median, alternating")
  names = list(FORMULATIONS) + ["torch"]
  op_timing.print_table(names, _layers(args), args.repeats, width=11)


def _layers(args):
  """U-Net's four upsampling layers: (label, GFLOP, functions to time)."""
  import torch
  rng = np.random.default_rng(0)
  side = args.size // 16
  for cin, cout in ((1024, 512), (512, 256), (256, 128), (128, 64)):
    x = rng.standard_normal((args.batch, side, side, cin), np.float32)
    k = (rng.standard_normal((2, 2, cin, cout)) * 0.05).astype(np.float32)
    g = rng.standard_normal((args.batch, 2 * side, 2 * side, cout), np.float32)
    xj, kj, gj = map(jnp.asarray, (x, k, g))
    loss = lambda f: lambda x, k: jnp.sum(f(x, k) * gj)
    want = jax.jit(jax.value_and_grad(loss(_reference), (0, 1)))(xj, kj)
    fns = {}
    for name, f in FORMULATIONS.items():
      grad = jax.jit(jax.value_and_grad(loss(f), (0, 1)))
      for a, b in zip(jax.tree.leaves(grad(xj, kj)), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.abs(b).max()))
      fns[name] = lambda grad=grad: jax.block_until_ready(grad(xj, kj))
    fns["torch"] = op_timing.torch_backward(torch.nn.ConvTranspose2d(cin, cout, 2, 2, bias=False),
                                            x, g)
    gflop = 3 * 2 * args.batch * side * side * 4 * cin * cout / 1e9
    yield str((args.batch, side, side, f"{cin}->{cout}")), gflop, fns
    side *= 2

if __name__ == "__main__":
  main()

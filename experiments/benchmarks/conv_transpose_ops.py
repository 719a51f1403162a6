"""Formulations of SegNet's 3x3 stride-2 'SAME' transposed convolution on
XLA:CPU, forward + backward (gradients of input and kernel), against PyTorch's
ConvTranspose2d at the same shapes.

  python experiments/benchmarks/conv_transpose_ops.py [--batch 8] [--size 128] [--repeats 5]

  packed      segjax.models.layers.conv_transpose: the four output phases
              packed into one stride-1 convolution with a 2x2 window
              (16 taps where the transposed convolution has 9: 16/9 the FLOPs).
  per_phase   one convolution per phase with only its own taps (2x2, 2x1,
              1x2, 1x1 windows: 9 taps, no wasted FLOPs), then interleaved.
  matmul      one (N H W, C_in) x (C_in, 9 C_out) matmul, then the nine tap
              outputs added into the four phases by shifted slices (col2im).
  lax         lax.conv_transpose (XLA's input-dilated convolution).

All agree with lax.conv_transpose to float32 rounding (checked first).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import op_timing  # noqa: E402
from segjax.models import layers  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")


def per_phase(x, kernel, stride=2, padding="SAME"):
  """Transposed convolution as one ordinary convolution per output phase."""
  kh, kw, cin, cout = kernel.shape
  plans = [layers._phase_plan(x.shape[1 + i], k, stride, *layers._transpose_padding(k, stride, padding))
           for i, k in enumerate((kh, kw))]
  (taps_h, _, out_h), (taps_w, _, out_w) = plans
  rows, cols = -(-out_h // stride), -(-out_w // stride)
  d_lo_h = -plans[0][1][0]
  d_lo_w = -plans[1][1][0]

  def window(taps, a, k, d_lo, in_size, n_out):
    used = [i for i in range(taps.shape[0]) if taps[i, a] != k]
    lo, hi = d_lo + used[0], d_lo + used[-1]
    assert used == list(range(used[0], used[-1] + 1))
    return [int(taps[i, a]) for i in used], (-lo, n_out - 1 + hi - (in_size - 1))

  phases = []
  for a in range(stride):
    th, ph = window(taps_h, a, kh, d_lo_h, x.shape[1], rows)
    row = []
    for b in range(stride):
      tw, pw = window(taps_w, b, kw, d_lo_w, x.shape[2], cols)
      k = kernel[np.array(th)[:, None], np.array(tw)[None, :]]
      row.append(jax.lax.conv_general_dilated(x, k, (1, 1), (ph, pw), dimension_numbers=DN))
    phases.append(jnp.stack(row, 3))  # (N, rows, cols, SW, C)
  y = jnp.stack(phases, 2)  # (N, rows, SH, cols, SW, C)
  n = x.shape[0]
  return y.reshape(n, rows * stride, cols * stride, cout)[:, :out_h, :out_w]


def matmul_col2im(x, kernel):
  """3x3 stride-2 'SAME' transposed convolution: one matmul, then overlap-add.

  Output row 2m reads input rows m-1 (tap 0) and m (tap 2); row 2m+1 reads
  row m (tap 1) (lax.conv_transpose's 'SAME' alignment, kernel not flipped).
  """
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  z = jnp.dot(x.reshape(-1, cin), kernel.transpose(2, 0, 1, 3).reshape(cin, 9 * cout))
  z = z.reshape(n, h, w, 3, 3, cout)
  shift = lambda t: jnp.pad(t, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]  # rows m -> m+1
  shift_w = lambda t: jnp.pad(t, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
  # Row phase a, column phase b: sum over row taps and column taps.
  def rows(tw):
    even = z[:, :, :, 2, tw] + shift(z[:, :, :, 0, tw])
    odd = z[:, :, :, 1, tw]
    return even, odd
  out = {}
  for a in (0, 1):
    c0 = rows(0)[a]
    c1 = rows(1)[a]
    c2 = rows(2)[a]
    out[a, 0] = c2 + shift_w(c0)
    out[a, 1] = c1
  y = jnp.stack([jnp.stack([out[a, 0], out[a, 1]], 3) for a in (0, 1)], 2)
  return y.reshape(n, 2 * h, 2 * w, cout)


FORMULATIONS = {
    "packed": lambda x, k: layers.conv_transpose(x, k, (2, 2), "SAME"),
    "per_phase": lambda x, k: per_phase(x, k),
    "matmul": matmul_col2im,
    "lax": lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DN),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  print(f"jax {jax.__version__}, torch {torch.__version__}, XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}, load average {os.getloadavg()}")
  print("ms per forward + backward (input and kernel gradients), median; GFLOP: useful "
        "(9 taps), forward + 2 backward")
  names = list(FORMULATIONS) + ["torch"]
  op_timing.print_table(names, _layers(args), args.repeats)


def _layers(args):
  """SegNet's four transposed convolutions: (label, GFLOP, functions to time)."""
  rng = np.random.default_rng(0)
  side = args.size // 16
  for cin, cout in ((512, 512), (512, 256), (256, 128), (128, 64)):
    x = rng.standard_normal((args.batch, side, side, cin), np.float32)
    k = (rng.standard_normal((3, 3, cin, cout)) * 0.05).astype(np.float32)
    g = rng.standard_normal((args.batch, 2 * side, 2 * side, cout), np.float32)
    xj, kj, gj = map(jnp.asarray, (x, k, g))
    reference = np.asarray(FORMULATIONS["lax"](xj, kj))
    fns = {}
    for name, f in FORMULATIONS.items():
      np.testing.assert_allclose(np.asarray(jax.jit(f)(xj, kj)), reference, rtol=1e-3, atol=1e-3)
      grad = jax.jit(jax.grad(lambda x, k, g, f=f: jnp.sum(f(x, k) * g), (0, 1)))
      fns[name] = lambda grad=grad: jax.block_until_ready(grad(xj, kj, gj))
    layer = torch.nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1, bias=False)
    fns["torch"] = op_timing.torch_backward(layer, x, g)
    gflop = 3 * 2 * args.batch * side * side * 9 * cin * cout / 1e9
    yield str((args.batch, side, side, f"{cin}->{cout}")), gflop, fns
    side *= 2

if __name__ == "__main__":
  main()

"""Per-layer timing of SegNet's or U-Net's 3x3 convolutions: forward, input
gradient and weight gradient, XLA:CPU (as jax.vjp builds them) against
PyTorch's eager ops, plus a weight gradient computed as one matmul of im2col
patches and as nine per-tap matmuls.

  python experiments/benchmarks/conv_ops.py [--model segnet|unet] [--batch 8] [--size 128] \
      [--repeats 5]

Each (layer, op) is timed alternately in both frameworks; the median counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from segjax.runtime import host_memory

DN = ("NHWC", "HWIO", "NHWC")


def segnet_convs(size: int):
  """(name, input side, c_in, c_out, stride) of SegNet's ordinary 3x3 convolutions."""
  layers, side, cin = [], size, 3
  for w in (64, 128, 256, 512):
    layers += [(f"enc{w}a", side, cin, w, 1), (f"enc{w}b/s2", side, w, w, 2)]
    side, cin = side // 2, w
  for w in (512, 256, 128, 64):
    side *= 2
    layers.append((f"dec{w}", side, w, w, 1))
  layers.append(("logits", size, 64, 2, 1))
  return layers


def unet_convs(size: int):
  """(name, input side, c_in, c_out, stride) of U-Net's 3x3 convolutions (depth 4)."""
  layers, side, cin = [], size, 3
  for w in (64, 128, 256, 512):
    layers += [(f"down{w}a", side, cin, w, 1), (f"down{w}b", side, w, w, 1)]
    side, cin = side // 2, w
  layers += [("bottom_a", side, 512, 1024, 1), ("bottom_b", side, 1024, 1024, 1)]
  for w in (512, 256, 128, 64):
    side *= 2
    layers += [(f"up{w}a", side, 2 * w, w, 1), (f"up{w}b", side, w, w, 1)]
  return layers


MODELS = {"segnet": segnet_convs, "unet": unet_convs}


def same_pads(side, stride):
  out = -(-side // stride)
  total = max((out - 1) * stride + 3 - side, 0)
  return (total // 2, total - total // 2)


def conv(x, w, stride):
  p = same_pads(x.shape[1], stride)
  return jax.lax.conv_general_dilated(x, w, (stride, stride), (p, p), dimension_numbers=DN)


def im2col_weight_grad(x, dy, stride):
  """dL/dW = patches(x)^T @ dy: one (9 c_in, N H W) x (N H W, c_out) matmul."""
  n, ho, wo, cout = dy.shape
  p = same_pads(x.shape[1], stride)
  xp = jnp.pad(x, ((0, 0), p, p, (0, 0)))
  cols = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
          for i in range(3) for j in range(3)]
  patches = jnp.concatenate(cols, -1).reshape(n * ho * wo, -1)
  dw = jnp.dot(patches.T, dy.reshape(-1, cout))
  return dw.reshape(3, 3, x.shape[-1], cout)


def tap_weight_grad(x, dy, stride):
  """dL/dW tap by tap: nine (c_in, N H W) x (N H W, c_out) matmuls."""
  n, ho, wo, cout = dy.shape
  p = same_pads(x.shape[1], stride)
  xp = jnp.pad(x, ((0, 0), p, p, (0, 0)))
  taps = [jnp.einsum("nhwc,nhwd->cd",
                     xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride], dy)
          for i in range(3) for j in range(3)]
  return jnp.stack(taps).reshape(3, 3, x.shape[-1], cout)


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  if isinstance(out, torch.Tensor) or isinstance(out, tuple) and isinstance(out[0], torch.Tensor):
    pass  # Eager PyTorch has finished.
  else:
    jax.block_until_ready(out)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", choices=sorted(MODELS), default="segnet")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  retained = host_memory.configure()  # As training does, for both frameworks.
  print(f"jax {jax.__version__}, torch {torch.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
        f"host memory retained: {retained}, load average {os.getloadavg()}")
  rng = np.random.default_rng(0)
  header = (f"{'layer':12s} {'in':>14s} {'GFLOP':>6s} | ms: {'xla fwd':>8s} {'torch fwd':>9s} "
            f"{'xla dx':>8s} {'torch dx':>8s} {'xla dW':>8s} {'torch dW':>8s} {'im2col dW':>9s} "
            f"{'tap dW':>8s}")
  print(header)
  totals = {}
  for name, side, cin, cout, stride in MODELS[args.model](args.size):
    x = rng.standard_normal((args.batch, side, side, cin), np.float32)
    w = (rng.standard_normal((3, 3, cin, cout), np.float32) * 0.05).astype(np.float32)
    ho = -(-side // stride)
    dy = rng.standard_normal((args.batch, ho, ho, cout), np.float32)
    xj, wj, dyj = map(jnp.asarray, (x, w, dy))
    fwd = jax.jit(lambda x, w: conv(x, w, stride))
    dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w, stride), x)[1](dy)[0])
    dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w, stride), w)[1](dy)[0])
    dw_im2col = jax.jit(lambda x, dy: im2col_weight_grad(x, dy, stride))
    dw_tap = jax.jit(lambda x, dy: tap_weight_grad(x, dy, stride))
    np.testing.assert_allclose(np.asarray(dw_im2col(xj, dyj)), np.asarray(dw(xj, wj, dyj)),
                               rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(np.asarray(dw_tap(xj, dyj)), np.asarray(dw(xj, wj, dyj)),
                               rtol=2e-3, atol=2e-2)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())
    bias_sizes = None
    t_fwd = lambda: F.conv2d(xt, wt, None, stride, 1)
    t_dx = lambda: torch.ops.aten.convolution_backward(
        dyt, xt, wt, bias_sizes, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])
    t_dw = lambda: torch.ops.aten.convolution_backward(
        dyt, xt, wt, bias_sizes, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])
    ops = {"xla fwd": lambda: fwd(xj, wj), "torch fwd": t_fwd,
           "xla dx": lambda: dx(xj, wj, dyj), "torch dx": t_dx,
           "xla dW": lambda: dw(xj, wj, dyj), "torch dW": t_dw,
           "im2col dW": lambda: dw_im2col(xj, dyj), "tap dW": lambda: dw_tap(xj, dyj)}
    if cin == 3:
      ops.pop("xla dx"), ops.pop("torch dx")
    for fn in ops.values():  # Compile and warm up.
      timed(fn)
    times = {k: [] for k in ops}
    for _ in range(args.repeats):
      for k, fn in ops.items():
        times[k].append(timed(fn))
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    gflop = 2 * args.batch * ho * ho * 9 * cin * cout / 1e9
    for k, v in med.items():
      totals[k] = totals.get(k, 0.0) + v
    cells = " ".join(f"{med[k]:8.1f}" if k in med else f"{'-':>8s}" for k in
                     ("xla fwd", "torch fwd", "xla dx", "torch dx", "xla dW", "torch dW",
                      "im2col dW", "tap dW"))
    print(f"{name:12s} {str((args.batch, side, side, cin)):>14s} {gflop:6.2f} |     {cells}", flush=True)
  cells = " ".join(f"{totals[k]:8.1f}" for k in
                   ("xla fwd", "torch fwd", "xla dx", "torch dx", "xla dW", "torch dW",
                    "im2col dW", "tap dW"))
  print(f"{'total':12s} {'':>14s} {'':>6s} |     {cells}")
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()

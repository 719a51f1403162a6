"""Weight gradient of single convolutions: XLA's own against the sliced one of
`segjax.models.convolution`, alternating, medians of --repeats.

  python experiments/benchmarks/weight_grad_ops.py [--repeats 5] [N,H,C_IN,C_OUT,STRIDE ...]

Defaults: the 3x3 'SAME' layers of SegNet (batch 8 at 128x128, batch 4 at
256x256) and U-Net (batch 4 at 128x128) with outputs of 64x64 and up. Each
line gives the milliseconds of both and whether XLA ran the convolutions
with YNNPACK (its compiled HLO holds a YNNPACK fusion) or Eigen.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
from jax import lax  # noqa: E402

from segjax.models import convolution  # noqa: E402
from segjax.runtime import host_memory  # noqa: E402

LAYERS = ("8,128,3,64,1 8,128,64,64,1 8,128,64,64,2 8,64,64,128,1 8,64,128,128,1 "
          "4,256,3,64,1 4,256,64,64,1 4,256,64,64,2 4,128,64,128,1 4,128,128,128,1 "
          "4,128,64,64,1 4,128,128,64,1 4,64,128,128,1").split()


def _kernel_gradient(sliced: bool, strides, x, kernel, grad):
  conv = functools.partial(lax.conv_general_dilated, window_strides=strides, padding="SAME",
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if sliced:
    return convolution._sliced_kernel_gradient(conv, x, kernel, grad)
  return convolution._kernel_gradient(conv, x, kernel, grad)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("layers", nargs="*", default=LAYERS)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  retained = host_memory.configure()  # As training does.
  print(f"jax {jax.__version__}; host memory retained: {retained}; load average {os.getloadavg()}",
        flush=True)
  for layer in args.layers:
    n, size, c_in, c_out, stride = map(int, layer.split(","))
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (n, size, size, c_in))
    kernel = jax.random.normal(keys[1], (3, 3, c_in, c_out))
    grad = jax.random.normal(keys[2], (n, size // stride, size // stride, c_out))
    fns, engines, times = {}, {}, {"xla": [], "sliced": []}
    for name in times:
      fn = jax.jit(functools.partial(_kernel_gradient, name == "sliced", (stride, stride)))
      engines[name] = "ynnpack" if "__ynn_fusion" in fn.lower(x, kernel, grad).compile(
      ).as_text() else "eigen"
      fns[name] = fn
      fn(x, kernel, grad).block_until_ready()
    for _ in range(args.repeats):
      for name, fn in fns.items():
        start = time.perf_counter()
        fn(x, kernel, grad).block_until_ready()
        times[name].append(1000 * (time.perf_counter() - start))
    xla, sliced = (statistics.median(times[name]) for name in ("xla", "sliced"))
    print(f"N={n} {size}x{size} {c_in}->{c_out} stride {stride}: xla {xla:.1f} ms "
          f"({engines['xla']}), sliced {sliced:.1f} ms ({engines['sliced']}), "
          f"{xla / sliced:.2f}x", flush=True)
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()

"""XLA:CPU's default kernels against segjax's forward-pass option, and PyTorch (oneDNN).

  python experiments/inference_benchmark/forward_kernels.py > forward_kernels.log

1. Whole forward passes (SegNet of configs/segnet_skin.py, batch 16; U-Net of
   configs/unet.py, batch 4; 256x256) compiled with XLA's defaults, with
   `LIBRARY_FUSION_TYPE_DOT` (the train step's "eigen" choice) and with
   `segjax.runtime.cpu_kernels.INFERENCE_COMPILER_OPTIONS`, alternating, 3 rounds.
2. U-Net's 3x3 convolutions (+ ReLU) alone at batch 4, default and Eigen
   kernels, and torch.nn.functional.conv2d (NCHW and channels-last).
Medians in ms, and GFLOP/s for the convolutions.
"""

import statistics
import time

import jax
import numpy as np

from segjax.models import registry
from segjax.runtime import cpu_kernels

OPTIONS = {"default": None,
           "dot": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
           "individual_dot": cpu_kernels.INFERENCE_COMPILER_OPTIONS}


def median_ms(fn, rounds=5):
  fn()
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def whole_models(rng):
  for name, batch, width in (("segnet", 16, 0.5), ("unet", 4, 1.0)):
    model = registry.build(name, 2, width_multiplier=width)
    x = rng.normal(size=(batch, 256, 256, 3)).astype(np.float32)
    variables = jax.jit(lambda key: model.init(key, x[:1], train=False))(jax.random.key(0))
    forward = lambda v, x: model.apply(v, x, train=False)
    compiled = {k: jax.jit(forward, compiler_options=o) for k, o in OPTIONS.items()}
    reference = np.asarray(compiled["default"](variables, x))
    times = {k: [] for k in compiled}
    for k, fn in compiled.items():  # Warm-up, and the largest difference from the default.
      difference = float(np.abs(np.asarray(fn(variables, x)) - reference).max())
      print(f"{name} batch {batch}: {k} max |logit difference| {difference:.2e}", flush=True)
    for _ in range(3):
      for k, fn in compiled.items():
        start = time.perf_counter()
        fn(variables, x).block_until_ready()
        times[k].append(time.perf_counter() - start)
    print(f"{name} width {width} batch {batch} 256x256 forward, median ms: " + ", ".join(
        f"{k} {1000 * statistics.median(t):.0f}" for k, t in times.items()), flush=True)


def unet_convolutions(rng, batch=4):
  import torch
  conv = lambda x, w: jax.nn.relu(jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  default = jax.jit(conv)
  eigen = jax.jit(conv, compiler_options=cpu_kernels.INFERENCE_COMPILER_OPTIONS)
  for size, cin, cout in ((256, 64, 64), (256, 128, 64), (128, 128, 128), (64, 256, 256),
                          (32, 512, 512), (16, 1024, 1024)):
    x = rng.normal(size=(batch, size, size, cin)).astype(np.float32)
    w = (rng.normal(size=(3, 3, cin, cout)) * 0.05).astype(np.float32)
    x_nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    x_last = torch.from_numpy(x).permute(0, 3, 1, 2)  # Channels-last memory.
    w_torch = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
    w_last = w_torch.contiguous(memory_format=torch.channels_last)

    def torch_conv(inputs, weights):
      with torch.inference_mode():
        torch.relu(torch.nn.functional.conv2d(inputs, weights, padding=1))
    gflop = 2 * batch * size * size * 9 * cin * cout / 1e9
    results = {"xla_default": median_ms(lambda: default(x, w).block_until_ready()),
               "xla_individual_dot": median_ms(lambda: eigen(x, w).block_until_ready()),
               "torch_nchw": median_ms(lambda: torch_conv(x_nchw, w_torch)),
               "torch_channels_last": median_ms(lambda: torch_conv(x_last, w_last))}
    print(f"conv 3x3 {size}x{size} {cin}->{cout} batch {batch} ({gflop:.1f} GFLOP): " + ", ".join(
        f"{k} {v:.0f} ms ({gflop / v * 1000:.0f} GFLOP/s)" for k, v in results.items()),
        flush=True)


if __name__ == "__main__":
  from segjax import benchmark
  print(f"jax {jax.__version__}; float32 matmul 2048x2048 "
        f"{benchmark.matmul_peak_gflops(2048, 5):.1f} GFLOP/s", flush=True)
  rng = np.random.default_rng(0)
  whole_models(rng)
  unet_convolutions(rng)

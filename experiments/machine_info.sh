# Prints what a time depends on: the float32 matmul peak, the cores, the CPU and the load.
# Sourced by the experiments' run.sh scripts (python on PATH).
python -c "
import time, jax, jax.numpy as jnp
x = jnp.ones((2048, 2048), jnp.float32); f = jax.jit(lambda a: a @ a); f(x).block_until_ready()
best = min((lambda t: (f(x).block_until_ready(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(f'float32 matmul 2048x2048 peak: {2 * 2048**3 / best / 1e9:.1f} GFLOP/s (best of 5)')
"
nproc; lscpu | grep "Model name"; uptime

cd REPO
date -u +"start %FT%TZ"
python -c "
import time, jax, jax.numpy as jnp
x = jnp.ones((2048, 2048), jnp.float32); f = jax.jit(lambda a: a @ a); f(x).block_until_ready()
best = min((lambda t: (f(x).block_until_ready(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(f'float32 matmul 2048x2048 peak: {2 * 2048**3 / best / 1e9:.1f} GFLOP/s (best of 5, machine shared)')
"
nproc; lscpu | grep "Model name"; uptime
/usr/bin/time -v python -m segjax.main --config configs/segnet_camvid.py:../shared/data/camvid --workdir runs/segnet_camvid_camvid 
date -u +"end %FT%TZ"
python -m segjax.evaluate --workdir runs/segnet_camvid_camvid --split test \
  --output eval_test.json

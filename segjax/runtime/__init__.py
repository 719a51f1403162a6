"""Where a run executes: the device mesh and sharding, multi-process start-up, and the
platform-specific tuning (CPU kernels, host memory, device peaks, the CPU op policy)."""

"""segjax.runtime.host_memory: a program's freed buffers are reused without page faults."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from segjax.runtime import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A jitted program whose 64 MiB intermediate (4096 x 4096 float32) lives in
# XLA's temporary buffer; prints the fewest minor page faults of six
# executions. The fewest, because small allocations of other threads now and
# then split a freed block and the heap then grows by fresh (faulting) pages:
# how often depends on the machine. Retaining must make fault-free steps
# possible; glibc's defaults map the buffer afresh on every step.
_PROBE = textwrap.dedent("""
    import resource
    from segjax.runtime import host_memory
    retained = host_memory.configure()
    import jax, jax.numpy as jnp
    program = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)
    x = jnp.ones((4096, 64)) / 64
    for _ in range(3):
      jax.block_until_ready(program(x))
    faults = []
    for _ in range(6):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      jax.block_until_ready(program(x))
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(retained, min(faults))
""")


def _faults_per_execution(choice: str) -> tuple[bool, float]:
  env = {**os.environ, host_memory.ENVIRONMENT_VARIABLE: choice, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  retained, faults = done.stdout.split()
  return retained == "True", float(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the malloc settings are glibc's")
def test_retained_memory_needs_no_page_faults_from_step_to_step():
  retained, faults = _faults_per_execution("retain")
  released, faults_released = _faults_per_execution("release")
  assert retained and not released
  pages = 4096 * 4096 * 4 / 4096
  # glibc's defaults map the buffer afresh each time: on 4 KiB pages, a fault per page.
  assert faults_released > 0
  assert faults <= faults_released / 10 and faults < pages / 100, (faults, faults_released)


def test_an_unknown_choice_names_the_variable(monkeypatch):
  monkeypatch.setenv(host_memory.ENVIRONMENT_VARIABLE, "keep")
  with pytest.raises(ValueError, match="SEGJAX_HOST_MEMORY='keep'.*retain, release"):
    host_memory.configure()


def test_release_leaves_malloc_alone(monkeypatch):
  monkeypatch.setenv(host_memory.ENVIRONMENT_VARIABLE, "release")
  assert host_memory.configure() is False


@pytest.mark.parametrize("platforms, on_cpu", [("cpu", True), ("cuda", False), ("tpu,cpu", False)])
def test_auto_retains_only_where_jax_computes_on_the_cpu(monkeypatch, platforms, on_cpu):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
  assert host_memory.computation_on_cpu() is on_cpu
  # Retaining is process-wide: here its call only records that it was asked for.
  calls = []
  monkeypatch.setattr(host_memory, "retain_freed_memory", lambda: calls.append(1) or True)
  assert host_memory.configure() is on_cpu and len(calls) == int(on_cpu)
  monkeypatch.setenv(host_memory.ENVIRONMENT_VARIABLE, "retain")  # Asked for: retained anyway.
  assert host_memory.configure() is True


def test_an_accelerator_needs_its_plugin_and_its_device(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  monkeypatch.delenv("JAX_PLATFORM_NAME", raising=False)
  monkeypatch.setattr(host_memory, "_ACCELERATOR_DEVICE_FILES", ("/",))  # A device file exists.
  monkeypatch.setattr(host_memory, "_accelerator_plugin_installed", lambda: False)
  assert host_memory.computation_on_cpu()
  monkeypatch.setattr(host_memory, "_accelerator_plugin_installed", lambda: True)
  assert not host_memory.computation_on_cpu()
  monkeypatch.setattr(host_memory, "_ACCELERATOR_DEVICE_FILES", ("/no/such/device",))
  assert host_memory.computation_on_cpu()

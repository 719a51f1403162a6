"""The package's rooms import downwards only, and no module takes part in an import cycle.

Read from the source with `ast` (imports inside functions included), so nothing
is imported or compiled.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "segjax"

# Each room may import its own modules and those of lower rank.
RANKS = {
    "runtime": 0,
    "scoring": 1,
    "data": 1,
    "models": 2,
    "inference": 3,
    "training": 4,
    "export": 5,
    "": 5,  # The commands at the top: main, evaluate, predict, summary, benchmark, cli.
    "config": 1,  # segjax/config.py, the base config every config file extends, at the top.
}
ROOMS = sorted(room for room in RANKS if room not in ("", "config"))


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path, modules) -> set[str]:
  """segjax modules that `path` imports (`from segjax.x import y` counts segjax.x.y when y
  is a module, else segjax.x)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith("segjax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segjax"):
      for alias in node.names:
        child = f"{node.module}.{alias.name}"
        found.add(child if child in modules else node.module)
  return {name for name in found if name in modules}


def _room(module: str) -> str:
  if module == "segjax.config":
    return "config"
  parts = module.split(".")
  return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else ""


def _graph():
  modules = _modules()
  return {name: _imports(path, modules) for name, path in modules.items()}


def test_every_room_has_a_rank():
  rooms = {_room(name) for name in _modules()}
  assert rooms <= set(RANKS), f"rooms without a rank in this test: {rooms - set(RANKS)}"
  assert set(ROOMS) <= rooms


def test_no_room_imports_a_higher_one():
  upward = [f"{module} ({_room(module) or 'commands'}) imports {target} "
            f"({_room(target) or 'commands'})"
            for module, targets in _graph().items() for target in sorted(targets)
            if RANKS[_room(target)] > RANKS[_room(module)]]
  assert not upward, "\n".join(upward)


def test_only_commands_import_the_training_loop():
  importers = sorted(module for module, targets in _graph().items()
                     if "segjax.training.trainer" in targets and _room(module) != "")
  assert not importers, importers


def test_no_import_cycles():
  graph = _graph()
  state, stack, cycles = {}, [], []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph[node]):
      # A package's __init__ importing its own submodules is how registries fill.
      if node == target or target.startswith(node + "."):
        continue
      if state.get(target) == "open":
        cycles.append(stack[stack.index(target):] + [target])
      elif target not in state:
        visit(target)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node)
  assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_says_its_job(room):
  doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
  assert doc, f"segjax/{room}/__init__.py has no docstring"


EXPERIMENTS = PACKAGE.parent / "experiments"


def test_every_experiment_script_is_quoted_by_a_page_or_used_by_a_quoted_script():
  # A script in experiments/ regenerates a number a page quotes: a page (a README.md or
  # a page of experiments/) names it by its path below experiments/ or its folder, or a
  # quoted script imports, sources or runs it.
  pages = [PACKAGE.parent / "README.md", *EXPERIMENTS.rglob("*.md")]
  page_text = "\n".join(page.read_text() for page in pages)
  scripts = {p for p in EXPERIMENTS.rglob("*") if p.suffix in (".py", ".sh")}
  assert scripts

  def named_in(path: pathlib.Path, text: str) -> bool:
    # Its path below experiments/, or its name on its folder's page (README.md inside
    # the folder, or the page of the same name beside it: inference_benchmark.md).
    folder_pages = [path.parent / "README.md", path.parent.with_suffix(".md")]
    return (path.relative_to(EXPERIMENTS).as_posix() in text or
            any(page.exists() and path.name in page.read_text() for page in folder_pages))

  quoted = {p for p in scripts if named_in(p, page_text)}
  while True:  # Scripts that quoted scripts use: imports (module names), paths, sourced files.
    used_text = "\n".join(p.read_text() for p in quoted)
    used = {p for p in scripts - quoted if named_in(p, used_text) or
            p.suffix == ".py" and f"import {p.stem}" in used_text and
            any(q.parent == p.parent for q in quoted)}
    if not used:
      break
    quoted |= used
  unquoted = sorted(p.relative_to(EXPERIMENTS).as_posix() for p in scripts - quoted)
  assert not unquoted, f"scripts no page quotes (regenerate nothing quoted?): {unquoted}"

"""A JAX function of fixed-size images to an ONNX graph, through its jaxpr.

Each primitive of the traced function becomes one or a few standard ONNX
operators (opset 17), so onnxruntime or any ONNX consumer runs the model with
neither JAX nor segjax. The batch dimension stays symbolic ("batch"); height,
width and the parameters are fixed (the parameters are initialisers).

The primitives covered are those segjax's models, normalisations and output
heads produce; another primitive is an `UnsupportedError` naming it and where
it was traced from. jax2onnx converts far more, but pins orbax-checkpoint
below the version segjax's checkpoints need and imports every one of its
plugins (which compiles dozens of XLA programs) on its first conversion, so
segjax converts its own small set here and depends only on `onnx`.
"""

from __future__ import annotations

import itertools
import string
from typing import Callable, Sequence

import jax
import numpy as np
import onnx
from jax.extend import core as jex_core
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BATCH = "batch"  # Name of the symbolic batch dimension, in jax and in ONNX.
_INT64_MAX = np.iinfo(np.int64).max


class UnsupportedError(NotImplementedError):
  """A primitive or parameter this converter has no ONNX form for."""


def convert(fn: Callable, image_shape: Sequence[int], input_dtype=np.uint8,
            input_name: str = "images", output_names: Sequence[str] = ("output",)
            ) -> onnx.ModelProto:
  """ONNX model of `fn` on (batch, *image_shape) inputs of `input_dtype`.

  `fn` is traced at two batch sizes, and the dimensions that differ between
  the two traces become functions of the batch size read at run time: the
  graph holds the same operations as segjax's own jitted function (tracing
  with a symbolic batch would turn some slices into gathers).

  Args:
    fn: array (N, *image_shape) -> one array or a tuple of arrays, N leading.
    image_shape: the fixed per-image shape, e.g. (H, W, C).
  Raises:
    UnsupportedError: `fn` uses a primitive or option with no conversion here,
      or its operations depend on the batch size.
  """
  traces = [jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((n, *image_shape), input_dtype))
            for n in _TRACE_BATCHES]
  graph = _Graph()
  graph.inputs.append(graph.value_info(input_name, *(t.in_avals[0] for t in traces)))
  graph.batch_source = input_name
  outputs = graph.convert_jaxpr(*traces, [input_name])
  if len(outputs) != len(output_names):
    raise ValueError(f"the function returns {len(outputs)} arrays; {len(output_names)} "
                     f"output names given")
  for name, value, *avals in zip(output_names, outputs, *(t.out_avals for t in traces)):
    graph.node("Identity", [value], outputs=[name])
    graph.outputs.append(graph.value_info(name, *avals))
  used = {name for node in graph.nodes for name in node.input}
  initializers = [tensor for tensor in graph.initializers if tensor.name in used]
  model = helper.make_model(
      helper.make_graph(graph.nodes, "segjax", graph.inputs, graph.outputs, initializers),
      opset_imports=[helper.make_opsetid("", OPSET)], producer_name="segjax")
  onnx.checker.check_model(model, full_check=True)
  return model


_TRACE_BATCHES = (2, 3)  # Not 1: code may treat a dimension of 1 apart.


def dims(shape_a, shape_b) -> list:
  """Per dimension, an int, or (k, c) for k * batch + c, from shapes at the two batch sizes."""
  result = []
  for a, b in zip(shape_a, shape_b):
    if a == b:
      result.append(int(a))
    else:
      k = b - a
      result.append((k, a - k * _TRACE_BATCHES[0]))
  return result


class _Graph:
  """ONNX nodes and initialisers under construction."""

  def __init__(self):
    self.batch_source = None  # The input whose first dimension is the batch.
    self._batch_tensor = None
    self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
    self._names = itertools.count()
    self.other = None  # The equation being converted, as traced at the second batch size.

  def value_info(self, name, aval_a, aval_b):
    shape = []
    for d in dims(aval_a.shape, aval_b.shape):
      if isinstance(d, tuple) and d != (1, 0):
        raise UnsupportedError(f"{name}: a dimension {d[0]} * batch + {d[1]}")
      shape.append(BATCH if isinstance(d, tuple) else d)
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(np.dtype(aval_a.dtype)), shape)

  def fresh(self, prefix="v") -> str:
    return f"{prefix}{next(self._names)}"

  def const(self, value, dtype=None) -> str:
    array = np.asarray(value, dtype)
    name = self.fresh("c")
    self.initializers.append(numpy_helper.from_array(array, name))
    return name

  def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
           **attributes) -> str | list[str]:
    """Adds a node; returns its output name (or names when several are asked)."""
    outputs = list(outputs) if outputs is not None else [self.fresh()]
    self.nodes.append(helper.make_node(op, list(inputs), outputs, **attributes))
    return outputs[0] if len(outputs) == 1 else outputs

  def batch_size(self) -> str:
    """int64 (1,): the batch size, read from the input's shape at run time."""
    if self._batch_tensor is None:
      self._batch_tensor = self.node("Shape", [self.batch_source], start=0, end=1)
    return self._batch_tensor

  def shape_tensor(self, shape: list) -> str:
    """int64 (rank,) of `dims` entries; those depending on the batch are computed at run time."""
    if all(isinstance(d, int) for d in shape):
      return self.const(shape, np.int64)
    parts = []
    for d in shape:
      if isinstance(d, int):
        parts.append(self.const([d], np.int64))
        continue
      k, c = d
      value = self.batch_size()
      if k != 1:
        value = self.node("Mul", [value, self.const([k], np.int64)])
      if c:
        value = self.node("Add", [value, self.const([c], np.int64)])
      parts.append(value)
    return self.node("Concat", parts, axis=0)

  def out_dims(self, eqn, index=0) -> list:
    return dims(eqn.outvars[index].aval.shape, self.other.outvars[index].aval.shape)

  def in_dims(self, eqn, index=0) -> list:
    return dims(eqn.invars[index].aval.shape, self.other.invars[index].aval.shape)

  def convert_jaxpr(self, closed_a, closed_b, inputs: Sequence[str]) -> list[str]:
    """Adds the equations of a jaxpr traced at the two batch sizes; returns its outputs."""
    jaxpr, other_jaxpr = closed_a.jaxpr, closed_b.jaxpr
    env = {}
    for var, value in zip(jaxpr.constvars, closed_a.consts):
      env[var] = self.const(np.asarray(value))
    for var, name in zip(jaxpr.invars, inputs):
      env[var] = name

    def read(atom):
      if isinstance(atom, jex_core.Literal):
        return self.const(np.asarray(atom.val, atom.aval.dtype))
      return env[atom]

    if [e.primitive for e in jaxpr.eqns] != [e.primitive for e in other_jaxpr.eqns]:
      raise UnsupportedError("the function's operations depend on the batch size")
    for eqn, other in zip(jaxpr.eqns, other_jaxpr.eqns):
      rule = _RULES.get(eqn.primitive.name)
      if rule is None:
        raise UnsupportedError(
            f"no ONNX conversion for the JAX primitive {eqn.primitive.name!r} "
            f"(traced from {_where(eqn)})")
      self.other = other
      try:
        outs = rule(self, eqn, [read(x) for x in eqn.invars])
      except UnsupportedError as error:
        raise UnsupportedError(f"{eqn.primitive.name} (traced from {_where(eqn)}): "
                               f"{error}") from None
      outs = outs if isinstance(outs, list) else [outs]
      for var, name in zip(eqn.outvars, outs):
        env[var] = name
    return [read(x) for x in jaxpr.outvars]


def _where(eqn) -> str:
  frames = [f for f in eqn.source_info.traceback.frames if "/segjax/" in f.file_name] \
      if eqn.source_info.traceback else []
  if not frames:
    return "an unknown place"
  frame = frames[0]
  return f"{frame.file_name.rsplit('/segjax/', 1)[-1]}:{frame.line_num}"




# Rules: (graph, eqn, input names) -> output name or names.

def _elementwise(op):
  return lambda g, eqn, x: g.node(op, x)


def _compose(*ops):
  def rule(g, eqn, x):
    value = x[0]
    for op in ops:
      value = g.node(op, [value])
    return value
  return rule


def _square(g, eqn, x):
  return g.node("Mul", [x[0], x[0]])


def _integer_pow(g, eqn, x):
  power = eqn.params["y"]
  if power < 0:
    raise UnsupportedError(f"negative power {power}")
  if power == 0:
    return g.node("Expand", [g.const(np.ones((), eqn.outvars[0].aval.dtype)),
                             g.node("Shape", [x[0]])])
  value = x[0]
  for _ in range(power - 1):
    value = g.node("Mul", [value, x[0]])
  return value


def _not_equal(g, eqn, x):
  return g.node("Not", [g.node("Equal", x)])


def _convert(g, eqn, x):
  dtype = np.dtype(eqn.params["new_dtype"])
  return g.node("Cast", x, to=helper.np_dtype_to_tensor_dtype(dtype))


def _select_n(g, eqn, x):
  predicate, *cases = x
  if len(cases) != 2:
    raise UnsupportedError(f"select_n of {len(cases)} cases")
  if eqn.invars[0].aval.dtype != np.bool_:
    predicate = g.node("Cast", [predicate], to=TensorProto.BOOL)
  return g.node("Where", [predicate, cases[1], cases[0]])


def _reduce(op, axes_as_input):
  def rule(g, eqn, x):
    axes = list(eqn.params["axes"])
    if axes_as_input:
      return g.node(op, [x[0], g.const(axes, np.int64)], keepdims=0)
    return g.node(op, x, axes=axes, keepdims=0)
  return rule


def _argmax(g, eqn, x):
  axis, = eqn.params["axes"]
  index = g.node("ArgMax", x, axis=axis, keepdims=0, select_last_index=0)
  dtype = np.dtype(eqn.params["index_dtype"])
  return g.node("Cast", [index], to=helper.np_dtype_to_tensor_dtype(dtype))


def _reshape(g, eqn, x):
  if eqn.params.get("dimensions") is not None:
    raise UnsupportedError("reshape with dimensions")
  return g.node("Reshape", [x[0], g.shape_tensor(g.out_dims(eqn))])


def _broadcast_in_dim(g, eqn, x):
  shape, operand_shape = g.out_dims(eqn), g.in_dims(eqn)
  kept = list(eqn.params["broadcast_dimensions"])
  value = x[0]
  new_axes = [i for i in range(len(shape)) if i not in kept]
  if new_axes:
    value = g.node("Unsqueeze", [value, g.const(new_axes, np.int64)])
  # Expand broadcasts both ways: a dimension the operand already has stays 1 in the target.
  target = [1 if (i in kept and operand_shape[kept.index(i)] == d) else d
            for i, d in enumerate(shape)]
  if all(d == 1 for d in target):
    return g.node("Identity", [value])
  return g.node("Expand", [value, g.shape_tensor(target)])


def _squeeze(g, eqn, x):
  return g.node("Squeeze", [x[0], g.const(list(eqn.params["dimensions"]), np.int64)])


def _expand_dims(g, eqn, x):
  return g.node("Unsqueeze", [x[0], g.const(list(eqn.params["dimensions"]), np.int64)])


def _transpose(g, eqn, x):
  return g.node("Transpose", x, perm=list(eqn.params["permutation"]))


def _concatenate(g, eqn, x):
  return g.node("Concat", x, axis=eqn.params["dimension"])


def _stack(g, eqn, x):
  axis = eqn.params["axis"]
  axes = g.const([axis], np.int64)
  return g.node("Concat", [g.node("Unsqueeze", [v, axes]) for v in x], axis=axis)


def _static_slice(g, value, starts, ends, axes, steps=None):
  inputs = [value, g.const(starts, np.int64), g.const(ends, np.int64), g.const(axes, np.int64)]
  if steps is not None:
    inputs.append(g.const(steps, np.int64))
  return g.node("Slice", inputs)


def _slice(g, eqn, x):
  shape = g.in_dims(eqn)
  limits = dims(eqn.params["limit_indices"], g.other.params["limit_indices"])
  starts, ends, axes, steps = [], [], [], []
  strides = eqn.params["strides"] or (1,) * len(shape)
  for axis, (start, limit, stride, size) in enumerate(
      zip(eqn.params["start_indices"], limits, strides, shape)):
    if start == 0 and stride == 1 and limit == size:
      continue  # The whole dimension (the batch, for one).
    if not all(isinstance(v, int) for v in (start, limit, size)):
      raise UnsupportedError("a slice of the batch dimension")
    starts.append(start), ends.append(limit), axes.append(axis), steps.append(stride)
  if not axes:
    return g.node("Identity", x)
  return _static_slice(g, x[0], starts, ends, axes, steps)


def _rev(g, eqn, x):
  axes = list(eqn.params["dimensions"])
  if not axes:
    return g.node("Identity", x)
  return _static_slice(g, x[0], [-1] * len(axes), [-_INT64_MAX] * len(axes), axes,
                       [-1] * len(axes))


def _pad(g, eqn, x):
  config = [tuple(int(v) for v in c) for c in eqn.params["padding_config"]]
  if any(interior for _, _, interior in config):
    raise UnsupportedError("interior padding")
  value = x[0]
  positive = [max(lo, 0) for lo, _, _ in config] + [max(hi, 0) for _, hi, _ in config]
  if any(positive):
    value = g.node("Pad", [value, g.const(positive, np.int64), x[1]], mode="constant")
  if any(lo < 0 or hi < 0 for lo, hi, _ in config):  # Negative padding crops.
    axes = [i for i, (lo, hi, _) in enumerate(config) if lo < 0 or hi < 0]
    starts = [max(-config[i][0], 0) for i in axes]
    ends = [-config[i][1] if config[i][1] < 0 else _INT64_MAX for i in axes]
    value = _static_slice(g, value, starts, ends, axes)
  return value if value != x[0] else g.node("Identity", [value])


def _dot_general(g, eqn, x):
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_rank, rhs_rank = (len(v.aval.shape) for v in eqn.invars)
  out_dtype = eqn.outvars[0].aval.dtype
  lhs, rhs = x
  if eqn.invars[0].aval.dtype != out_dtype:
    lhs = g.node("Cast", [lhs], to=helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)))
  if eqn.invars[1].aval.dtype != out_dtype:
    rhs = g.node("Cast", [rhs], to=helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)))
  # x @ kernel over the last axis of x: a MatMul, which runtimes run fastest.
  if (not lhs_batch and tuple(lhs_contract) == (lhs_rank - 1,) and rhs_rank == 2
      and tuple(rhs_contract) == (0,)):
    return g.node("MatMul", [lhs, rhs])
  letters = iter(string.ascii_letters)
  lhs_letters = [next(letters) for _ in range(lhs_rank)]
  rhs_letters = [None] * rhs_rank
  for l_axis, r_axis in zip(list(lhs_contract) + list(lhs_batch),
                            list(rhs_contract) + list(rhs_batch)):
    rhs_letters[r_axis] = lhs_letters[l_axis]
  rhs_letters = [v or next(letters) for v in rhs_letters]
  # Output: batch dimensions, then lhs free, then rhs free (dot_general's order).
  out = [lhs_letters[i] for i in lhs_batch]
  out += [c for i, c in enumerate(lhs_letters) if i not in lhs_contract and i not in lhs_batch]
  out += [c for i, c in enumerate(rhs_letters) if i not in rhs_contract and i not in rhs_batch]
  equation = f"{''.join(lhs_letters)},{''.join(rhs_letters)}->{''.join(out)}"
  return g.node("Einsum", [lhs, rhs], equation=equation)


def _channels_first(g, value, spec):
  """Transposes `value` from its layout to ONNX's (batch, feature, spatial...)."""
  perm = list(spec)
  return value if perm == sorted(perm) else g.node("Transpose", [value], perm=perm)


def _from_channels_first(g, value, spec):
  inverse = list(np.argsort(spec))
  return value if inverse == sorted(inverse) else g.node("Transpose", [value], perm=inverse)


def _conv(g, eqn, x):
  p = eqn.params
  if any(d != 1 for d in p["lhs_dilation"]):
    raise UnsupportedError("input dilation (a transposed convolution)")
  if p["batch_group_count"] != 1:
    raise UnsupportedError("batch_group_count > 1")
  numbers = p["dimension_numbers"]
  lhs = _channels_first(g, x[0], numbers.lhs_spec)
  rhs = _channels_first(g, x[1], numbers.rhs_spec)
  padding = [tuple(int(v) for v in pair) for pair in p["padding"]]
  if any(lo < 0 or hi < 0 for lo, hi in padding):
    axes = [i + 2 for i, (lo, hi) in enumerate(padding) if lo < 0 or hi < 0]
    lhs = _static_slice(g, lhs, [max(-padding[a - 2][0], 0) for a in axes],
                        [-padding[a - 2][1] if padding[a - 2][1] < 0 else _INT64_MAX
                         for a in axes], axes)
    padding = [(max(lo, 0), max(hi, 0)) for lo, hi in padding]
  kernel_shape = [eqn.invars[1].aval.shape[i] for i in numbers.rhs_spec[2:]]
  out = g.node("Conv", [lhs, rhs], kernel_shape=kernel_shape,
               strides=list(p["window_strides"]), dilations=list(p["rhs_dilation"]),
               pads=[lo for lo, _ in padding] + [hi for _, hi in padding],
               group=p["feature_group_count"])
  return _from_channels_first(g, out, numbers.out_spec)


def _reduce_window(op, scale_by_count):
  def rule(g, eqn, x):
    p = eqn.params
    window, strides = p["window_dimensions"], p["window_strides"]
    rank = len(window)
    if (window[0], window[-1], strides[0], strides[-1]) != (1, 1, 1, 1) or \
        any(d != 1 for d in p["base_dilation"] + p["window_dilation"]):
      raise UnsupportedError("a window over the batch or channel axis, or dilated")
    padding = p["padding"][1:-1]
    if any(lo or hi for lo, hi in (p["padding"][0], p["padding"][-1])):
      raise UnsupportedError("a window padded over the batch or channel axis")
    # Spatial padding: JAX pads with the reduction's identity (-inf for max, 0 for sum),
    # which MaxPool's pads ignore and AveragePool's count_include_pad=1 counts as 0.
    pads = {"pads": [lo for lo, _ in padding] + [hi for _, hi in padding]} if any(
        lo or hi for lo, hi in padding) else {}
    if pads and op == "AveragePool":
      pads["count_include_pad"] = 1
    spec = (0, rank - 1, *range(1, rank - 1))  # (N, spatial..., C) -> (N, C, spatial...)
    value = _channels_first(g, x[0], spec)
    value = g.node(op, [value], kernel_shape=list(window[1:-1]), strides=list(strides[1:-1]),
                   **pads)
    if scale_by_count:
      count = int(np.prod(window))
      value = g.node("Mul", [value, g.const(np.asarray(count, eqn.outvars[0].aval.dtype))])
    return _from_channels_first(g, value, spec)
  return rule


def _gather(g, eqn, x):
  """`jnp.take(array, indices, axis)`: one axis indexed by a vector of indices."""
  numbers = eqn.params["dimension_numbers"]
  rank = len(eqn.invars[0].aval.shape)
  indices_shape = eqn.invars[1].aval.shape
  axis = numbers.start_index_map[0] if len(numbers.start_index_map) == 1 else None
  if (axis is None or tuple(numbers.collapsed_slice_dims) != (axis,)
      or getattr(numbers, "operand_batching_dims", ()) or len(indices_shape) != 2
      or indices_shape[1] != 1
      or tuple(numbers.offset_dims) != tuple(i for i in range(rank) if i != axis)):
    raise UnsupportedError(f"a gather other than indexing one axis by a vector ({numbers})")
  indices = g.node("Squeeze", [x[1], g.const([1], np.int64)])
  return g.node("Gather", [x[0], indices], axis=axis)


def _call(param):
  return lambda g, eqn, x: g.convert_jaxpr(eqn.params[param], g.other.params[param], x)


def _identity(g, eqn, x):
  return g.node("Identity", [x[0]])


_RULES = {
    "add": _elementwise("Add"), "sub": _elementwise("Sub"), "mul": _elementwise("Mul"),
    "div": _elementwise("Div"), "max": _elementwise("Max"), "min": _elementwise("Min"),
    "pow": _elementwise("Pow"), "and": _elementwise("And"), "or": _elementwise("Or"),
    "neg": _elementwise("Neg"), "exp": _elementwise("Exp"), "log": _elementwise("Log"),
    "sqrt": _elementwise("Sqrt"), "rsqrt": _compose("Sqrt", "Reciprocal"),
    "tanh": _elementwise("Tanh"), "logistic": _elementwise("Sigmoid"),
    "abs": _elementwise("Abs"), "sign": _elementwise("Sign"), "floor": _elementwise("Floor"),
    "ceil": _elementwise("Ceil"), "erf": _elementwise("Erf"), "not": _elementwise("Not"),
    "square": _square, "integer_pow": _integer_pow,
    "gt": _elementwise("Greater"), "lt": _elementwise("Less"),
    "ge": _elementwise("GreaterOrEqual"), "le": _elementwise("LessOrEqual"),
    "eq": _elementwise("Equal"), "ne": _not_equal,
    "convert_element_type": _convert, "select_n": _select_n,
    "reduce_max": _reduce("ReduceMax", False), "reduce_min": _reduce("ReduceMin", False),
    "reduce_sum": _reduce("ReduceSum", True), "argmax": _argmax,
    "reshape": _reshape, "broadcast_in_dim": _broadcast_in_dim, "squeeze": _squeeze,
    "expand_dims": _expand_dims, "transpose": _transpose, "concatenate": _concatenate,
    "stack": _stack, "slice": _slice, "rev": _rev, "pad": _pad,
    "dot_general": _dot_general, "gather": _gather, "conv_general_dilated": _conv,
    "reduce_window_sum": _reduce_window("AveragePool", True),
    "reduce_window_max": _reduce_window("MaxPool", False),
    "jit": _call("jaxpr"), "pjit": _call("jaxpr"), "custom_jvp_call": _call("call_jaxpr"),
    "custom_vjp_call": _call("call_jaxpr"), "stop_gradient": _identity, "copy": _identity,
    "copy_p": _identity, "optimization_barrier": lambda g, eqn, x: [
        g.node("Identity", [v]) for v in x],
}

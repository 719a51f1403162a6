"""Running a command: errors a person can fix end in one message and exit status 2.

A wrong config key or value, a dataset problem, a missing file or workdir, a
checkpoint of another model, a workdir in use: the message says what, where
and what to do, and no Python traceback is printed (`--verbose` prints it).
Any other exception is a bug and keeps its traceback. A wrong flag (an unknown
one, a value it cannot take, a required one missing) is a user error too, and
`--help` exits with status 0.

The flags of the commands that run inference (`define_inference_flags`) have the
same names and meanings in each: --step, --mode, --scales, --flip.
"""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

from absl import app, flags

from segjax.data.images import DatasetError
from segjax.inference import segmenter
from segjax.training import checkpointing
from segjax.training.checkpointing import CheckpointMismatchError
from segjax.training.config_check import ConfigError
from segjax.training.run_control import WorkdirInUseError


class CommandError(Exception):
  """A command's own check of its input failed; the message says what and what to do."""


USER_ERRORS = (ConfigError, DatasetError, CheckpointMismatchError, WorkdirInUseError,
               CommandError, app.UsageError, FileNotFoundError, NotADirectoryError)
EXIT_USER_ERROR = 2
_HELP_FLAGS = ("-?", "--help", "--helpshort", "--helpfull", "--helpxml")

flags.DEFINE_bool("verbose", False, "Also print the Python traceback of errors in the input.")


def user_error(error: BaseException) -> BaseException | None:
  """The user error `error` is or was raised from (`raise ... from`), if any.

  Only explicit causes count: an exception raised while handling a user
  error (its context) may be a bug.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, USER_ERRORS):
      return error
    seen.add(id(error))
    error = error.__cause__
  return None


def report(error: BaseException, verbose: bool = False) -> int:
  """Prints a user error (the traceback too when `verbose`); returns the exit status."""
  if verbose:
    traceback.print_exception(error)
  cause = user_error(error)
  print(f"error: {cause}", file=sys.stderr)
  if not verbose:
    print("(--verbose shows where in the code it was raised)", file=sys.stderr)
  return EXIT_USER_ERROR


def _flag_error(message: str) -> NoReturn:
  print(f"error: {message}\n(--help lists the flags)", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a wrong flag as a user error and --help as a success."""
  arguments = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as error:
    _flag_error(str(error))
  except (AttributeError, KeyError) as error:
    # ml_collections' answer to --config.KEY=VALUE with a KEY the config does not have.
    if not any(a.startswith("--config.") for a in arguments):
      raise
    while isinstance(error, BaseException) and error.args:
      error = error.args[0]
    _flag_error(f"--config.KEY=VALUE: the config has no key {error}".replace("\n", "; "))
  except SystemExit as done:
    # absl's help flags print the help and exit with status 1 while parsing.
    if done.code == 1 and any(a.split("=")[0] in _HELP_FLAGS for a in arguments):
      sys.exit(0)
    raise
  for name in list(flags.FLAGS):
    try:  # A config file that failed to load raises an OSError at its first use.
      getattr(flags.FLAGS[name].value, "keys", None)
    except OSError as error:
      detail = str(error.__cause__ or error).strip().splitlines()[-1].strip()
      _flag_error(f"--{name}: cannot load the config file: {detail}")
  return remaining


def run(main) -> None:
  """`absl.app.run(main)`, with user errors reported by `report`."""
  def guarded(argv):
    try:
      return main(argv)
    except Exception as error:
      if user_error(error) is None:
        raise
      sys.exit(report(error, flags.FLAGS.verbose))
  # --help lists the main module's flags: those defined here (--verbose, the inference
  # flags) among them.
  for flag in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(guarded, flags_parser=_parse_flags)


def define_inference_flags() -> None:
  """--step, --mode, --scales and --flip: each left out, the latest checkpoint and the
  run's own inference (config.eval); `parse_step` and `inference_overrides` read them."""
  flags.DEFINE_string("step", None, "Checkpoint step, or 'best' (default: the latest).")
  flags.DEFINE_enum("mode", None, list(segmenter.MODES),
                    "whole or slide inference (default: the run's config.eval.mode).")
  flags.DEFINE_list("scales", None, "Test scales whose logits are averaged, e.g. 0.75,1,1.25 "
                    "(default: the run's config.eval.scales).")
  flags.DEFINE_bool("flip", None, "Also average the mirror image's logits; --noflip: not "
                    "(default: the run's config.eval.flip).")


def inference_overrides() -> dict:
  """The `segmenter.Options` fields the inference flags set: {"mode", "scales", "flip"}."""
  overrides = {}
  if flags.FLAGS.mode:
    overrides["mode"] = flags.FLAGS.mode
  if flags.FLAGS.flip is not None:
    overrides["flip"] = flags.FLAGS.flip
  if flags.FLAGS.scales:
    try:
      overrides["scales"] = tuple(float(s) for s in flags.FLAGS.scales)
    except ValueError:
      overrides["scales"] = ()
    if not overrides["scales"] or min(overrides["scales"]) <= 0:
      raise CommandError(f"--scales {','.join(flags.FLAGS.scales)}: give positive numbers, "
                         "e.g. 0.75,1,1.25")
  return overrides


def parse_step(text: str | None) -> int | str | None:
  """--step: a number, "best", or None for the latest checkpoint."""
  try:
    return checkpointing.parse_step(text)
  except ValueError as error:
    raise CommandError(str(error)) from error

"""Running a command: errors a person can fix end in one message and exit status 2.

A wrong config key or value, a dataset problem, a missing file or workdir, a
checkpoint of another model, a workdir in use: the message says what, where
and what to do, and no Python traceback is printed (`--verbose` prints it).
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback

from absl import app, flags

from segjax.data.images import DatasetError
from segjax.training.checkpointing import CheckpointMismatchError
from segjax.training.config_check import ConfigError
from segjax.training.run_control import WorkdirInUseError


class CommandError(Exception):
  """A command's own check of its input failed; the message says what and what to do."""


USER_ERRORS = (ConfigError, DatasetError, CheckpointMismatchError, WorkdirInUseError,
               CommandError, FileNotFoundError, NotADirectoryError)
EXIT_USER_ERROR = 2

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


def run(main) -> None:
  """`absl.app.run(main)`, with user errors reported by `report`."""
  def guarded(argv):
    try:
      return main(argv)
    except Exception as error:
      if user_error(error) is None:
        raise
      sys.exit(report(error, flags.FLAGS.verbose))
  app.run(guarded)

"""Weight files on disk: their checksums, and a download that never leaves half a file."""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.error
import urllib.request
import zipfile
from typing import Callable


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
  """The hex digest of the file's bytes ("md5", "sha256", ...)."""
  with open(path, "rb") as f:
    return hashlib.file_digest(f, algorithm).hexdigest()


def download(url: str, target: pathlib.Path, filename: str, where: str,
             check: Callable[[pathlib.Path], None]) -> None:
  """Downloads `url` to `target` through `target.part`, which `check` may verify or rewrite.

  Raises:
    FileNotFoundError: no network or a failed transfer; names `filename`, `url` and
      `where` (what the user can do instead).
    ValueError, zipfile.BadZipFile, KeyError: from `check`; nothing is left at `target`.
  """
  partial = target.with_name(target.name + ".part")
  try:
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
      f.writelines(iter(lambda: response.read(1 << 20), b""))
  except (urllib.error.URLError, OSError) as error:
    partial.unlink(missing_ok=True)
    raise FileNotFoundError(
        f"ImageNet weights: {filename} is not in {target.parent} and could not be "
        f"downloaded from {url} ({error}). Download it where there is network access "
        f"and {where}.") from error
  try:
    check(partial)
  except (ValueError, zipfile.BadZipFile, KeyError):
    partial.unlink(missing_ok=True)
    raise
  partial.replace(target)

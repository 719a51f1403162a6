"""Datasets' official files: found in `dataset.source_dir` or downloaded and checked,
then read from their archives, with errors that name the file and what to do.

A builder lists its files as `OfficialFile`s (name as published, address, size,
SHA-256). `locate` returns a file's path:
  - `dataset.source_dir` set (offline): the file of that name in it. A missing
    file is an error at once naming it, its address and the folder to put it in.
    The file is not checksummed (a copy may be repacked); a damaged one fails
    when read, with an error naming it.
  - `dataset.source_dir` empty: downloaded once into `<data_dir>/downloads/`,
    its size and SHA-256 checked; a network error fails at once (no retries)
    with the address and how to provide the file offline.
`OfficialFilesBuilder` is the base of TFDS builders written from such files as
ArrayRecord, with TFDS's download manager left out (it needs the network, and
retries with back-off before failing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from typing import Iterable, Iterator

import tensorflow_datasets as tfds

from segjax.data import images, tfds_utils
from segjax.data.images import DatasetError

DOWNLOAD_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class OfficialFile:
  name: str     # File name as published.
  url: str
  size: int     # Bytes.
  sha256: str


def locate(file: OfficialFile, source_dir: str, data_dir: str, dataset: str) -> str:
  """The file's path: in `source_dir` when set, else downloaded into `data_dir`/downloads."""
  if source_dir:
    folder = os.path.abspath(os.path.expanduser(source_dir))
    path = os.path.join(folder, file.name)
    if not os.path.isfile(path):
      raise DatasetError(
          f"dataset {dataset!r}: {path} not found. Put the official {file.name} "
          f"({file.size:,} bytes, from {file.url}) in dataset.source_dir={folder}, or set "
          f"dataset.source_dir='' to download it")
    return path
  path = os.path.join(data_dir, "downloads", file.name)
  if not (os.path.isfile(path) and os.path.getsize(path) == file.size):
    download(file, path, dataset)
  return path


def download(file: OfficialFile, path: str, dataset: str) -> None:
  """Downloads `file` to `path` through a temporary file; checks size and SHA-256."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f"{path}.part{os.getpid()}"
  offline_hint = (f"without network, download {file.name} from {file.url} elsewhere, put it "
                  f"in a folder and set dataset.source_dir to that folder")
  print(f"dataset {dataset}: downloading {file.url} ({file.size / 2**20:.0f} MiB)", flush=True)
  digest = hashlib.sha256()
  try:
    with urllib.request.urlopen(file.url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
        open(partial, "wb") as out:
      while chunk := response.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
  except (urllib.error.URLError, OSError) as error:
    _remove(partial)
    raise DatasetError(f"dataset {dataset!r}: cannot download {file.url} ({error}); "
                       f"{offline_hint}") from None
  size = os.path.getsize(partial)
  if size != file.size or digest.hexdigest() != file.sha256:
    _remove(partial)
    raise DatasetError(
        f"dataset {dataset!r}: {file.url} gave {size:,} bytes with SHA-256 "
        f"{digest.hexdigest()}, expected {file.size:,} bytes with SHA-256 {file.sha256}: "
        f"the download is damaged or the file changed; {offline_hint}")
  os.replace(partial, path)


def _remove(path: str) -> None:
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)


@contextlib.contextmanager
def damaged_file_errors(path: str, what: str = "archive"):
  """Turns the errors of reading a truncated or corrupt file into a DatasetError."""
  try:
    yield
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
    raise DatasetError(f"{path}: the {what} is damaged or truncated ({error or type(error)}); "
                       f"download it again") from None
  except OSError as error:
    if isinstance(error, FileNotFoundError):
      raise
    raise DatasetError(f"{path}: cannot read the {what} ({error}); download it again") from None


def read_tar(path: str, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
  """(name, bytes) of the members `names` of the tar (plain or gzip) at `path`, in
  archive order, in one pass front to back; a member not found is an error."""
  wanted = set(names)
  found = set()
  with damaged_file_errors(path), tarfile.open(path, "r|*") as archive:
    for member in archive:
      if member.isfile() and member.name in wanted:
        found.add(member.name)
        yield member.name, archive.extractfile(member).read()
  missing = wanted - found
  if missing:
    raise DatasetError(f"{path}: the archive lacks {len(missing)} file(s) it should hold, "
                       f"e.g. {', '.join(sorted(missing)[:3])}; is it the official one?")


def read_gzip(path: str) -> bytes:
  """The decompressed content of a gzip file."""
  with damaged_file_errors(path, "gzip file"), gzip.open(path, "rb") as f:
    return f.read()


def image_to_store(data: bytes, name: str, reencode: bool = False):
  """What an Image feature stores of an image file's bytes: the bytes themselves for an
  RGB JPEG, else (or with `reencode`) the decoded image as 8-bit RGB. `name` is for errors."""
  image = images.open_image(io.BytesIO(data), name)
  if images.is_stored_as_is(image) and not reencode:
    return data
  return images.to_rgb(image, name)


class OfficialFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders from official files; subclasses list `FILES`, define `_info`
  and `_split_generators(dl_manager)` reading `self.paths()`."""

  FILES: tuple[OfficialFile, ...] = ()

  def __init__(self, *, source_dir: str = "", data_dir: str):
    self.source_dir = source_dir
    super().__init__(data_dir=data_dir)

  def __getstate__(self):  # Rebuilt from these when unpickled (grain workers).
    return {"source_dir": self.source_dir, "data_dir": self.data_dir_root}

  def __setstate__(self, state):
    self.__init__(**state)

  def paths(self) -> dict[str, str]:
    """{file name: local path} of every official file (located or downloaded now)."""
    return {file.name: locate(file, self.source_dir, self.data_dir_root, self.name)
            for file in self.FILES}



class SegmentationFilesBuilder(OfficialFilesBuilder, skip_registration=True):
  """Images with their class masks (and file names); subclasses set `HOMEPAGE`."""

  HOMEPAGE = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "mask": tfds.features.Image(shape=(None, None, 1)),
            "file_name": tfds.features.Text(),
        }),
        homepage=self.HOMEPAGE)

def prepare(builder: OfficialFilesBuilder) -> OfficialFilesBuilder:
  """Prepares once; a failed preparation leaves no partial folder."""
  if not builder.is_prepared():
    parent = os.path.dirname(builder.data_dir)
    try:
      tfds_utils.prepare(builder)
    except BaseException:
      if os.path.isdir(parent):
        for name in os.listdir(parent):
          if name.startswith("incomplete."):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
      raise
  return builder


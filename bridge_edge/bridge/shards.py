"""Arrays on disk written batch by batch, read back memory-mapped (docs/scale.md).

A fit's window sets and feature stores are plain ``.npy`` files: ``np.load(path,
mmap_mode="r")`` maps them, so a stage reads only the rows it touches and no stage holds a
whole split in RAM. ``NpyAppender`` writes one when the row count is not known in advance (a
split's windows, one recording at a time): a fixed-size version-1.0 header is reserved, the rows
are appended, and the header is rewritten with the final shape on close. When the count is
known (the feature pass), ``numpy.lib.format.open_memmap`` is used directly.

``JoinedRows`` reads several such arrays as one (a split and the extra subjects read after it)
without joining them in RAM, and ``fill_in_passes`` gathers the results of batched passes into
one array allocated once.

No torch here: the device side reads run directories too.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bridge_edge.errors import RunDirFormatError

HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the dict text, padded: a multiple of 64
_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header of exactly ``HEADER_BYTES`` bytes (the format of NEP 1)."""
    text = repr(
        {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    room = HEADER_BYTES - len(_MAGIC) - 2 - 1  # the text ends with a newline
    if len(text) > room:
        raise ValueError(f"npy header {text!r} is longer than {room} characters")
    body = (text + " " * (room - len(text)) + "\n").encode("latin1")
    return _MAGIC + struct.pack("<H", len(body)) + body


class NpyAppender:
    """``path`` (.npy) grown by ``append(rows)``; ``close()`` writes the final shape.

    Rows must have ``row_shape`` and are cast to ``dtype``. Until ``close`` the file's header says
    0 rows, so a crash leaves a file that loads as empty rather than one that lies."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.row_shape = Path(path), np.dtype(dtype), tuple(row_shape)
        self.rows = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(npy_header(self.dtype, (0, *self.row_shape)))

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(npy_header(self.dtype, (self.rows, *self.row_shape)))
        self._file.close()

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_mapped(path: Path, stage: str) -> np.ndarray:
    """``path`` memory-mapped read-only (an ``np.memmap``; a 0-row file loads as an empty array)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as err:
        raise RunDirFormatError(
            f"{path} is missing; re-run the {stage} stage (`bridge-edge fit RECIPE --out RUN_DIR`)",
            path=str(path),
            stage=stage,
            expected=path.name,
        ) from err
    except ValueError as err:  # a truncated or damaged file
        raise RunDirFormatError(
            f"{path} is not a readable .npy file ({err}); re-run the {stage} stage",
            path=str(path),
            stage=stage,
            expected="a .npy file",
        ) from err


def release_pages(array) -> bool:
    """Give the pages of ``array``'s file mapping back to the kernel (``madvise(MADV_DONTNEED)``);
    False when ``array`` is not memory-mapped (or the system has no madvise).

    A read-only mapping's pages stay in the page cache, so the next read of a row refaults it
    from there, with the same bytes: only this process's resident set shrinks."""
    if isinstance(array, JoinedRows):
        return any([release_pages(part) for part in array.parts])  # every part, not the first mapped one
    mapped = getattr(array, "_mmap", None)  # np.memmap and its views share the file's mmap
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapped.madvise(mmap.MADV_DONTNEED)
    return True


class RowReader:
    """Rows of a (memory-mapped) array read batch by batch, as copies.

    Reading every row of a split over an epoch would otherwise leave the whole file resident in
    this process (the kernel's RSS counts a mapping's touched pages). After every read the
    mapping's pages are given back (``release_pages``), so a training loop holds its batch, not
    its split. Not less often: a fault maps the page-cache folio around the row, and on this
    kernel (6.18, large folios) 16 rows of 5 kB read at random mapped 14 MB. Giving back costs
    about 0.1 ms a batch (docs/scale.md). ``reader[idx]`` is ``np.array(array[idx])``."""

    def __init__(self, array) -> None:
        self.array = array.array if isinstance(array, RowReader) else array

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __getitem__(self, idx) -> np.ndarray:
        rows = self.array[idx]
        out = rows if isinstance(self.array, JoinedRows) else np.array(rows)  # joined rows are copies
        release_pages(self.array)
        return out


class JoinedRows:
    """Several arrays of one row shape read as their concatenation along rows, without making it.

    ``joined[idx]`` (an integer, a slice, an integer or boolean index array, or a tuple led by one
    of these) is a new array equal to ``np.concatenate(parts)[idx]``, read from each part at the
    rows it holds: memory-mapped parts stay mapped (``RunDir.windows``: a split and the subjects
    read after it). A row outside the rows raises ``IndexError``, as numpy does."""

    def __init__(self, parts: Sequence) -> None:
        self.parts = tuple(parts)
        if not self.parts or len({p.shape[1:] for p in self.parts}) != 1:
            raise ValueError(f"JoinedRows needs parts of one row shape, got {[p.shape for p in self.parts]}")
        self.dtype = np.result_type(*(p.dtype for p in self.parts))  # as np.concatenate gives
        # part j holds rows [starts[j], starts[j + 1])
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.parts[0].shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return self[:].astype(dtype, copy=False)

    def __getitem__(self, idx) -> np.ndarray:
        head, rest = idx, ()
        if isinstance(idx, tuple):  # rows first, then within each row
            head, rest = (idx[0], idx[1:]) if idx else (slice(None), ())
        rows = self._rows(head)
        out = self._gather(np.atleast_1d(rows))
        return out[0][rest] if rows.ndim == 0 else out[(slice(None), *rest)]

    def _rows(self, idx) -> np.ndarray:
        """``idx`` as row numbers in [0, len), by numpy's rules (negative rows count from the end)."""
        n = len(self)
        if isinstance(idx, slice):
            return np.arange(*idx.indices(n))
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean index of shape {idx.shape} for {n} rows")
            return np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.intp)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows are indexed by integers, slices or index arrays, not {idx.dtype}")
        if ((idx < -n) | (idx >= n)).any():
            raise IndexError(f"row index out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        part_of = np.searchsorted(self.starts, rows, side="right") - 1
        for j in np.unique(part_of):
            at = np.flatnonzero(part_of == j)
            out[at] = self.parts[j][rows[at] - self.starts[j]]
        return out


def first_rows(array, n: int):
    """``array[:n]``, kept mapped: a ``JoinedRows`` gives the ``JoinedRows`` of its parts' first rows."""
    if not isinstance(array, JoinedRows):
        return array[:n]
    ends = np.minimum(np.maximum(n - array.starts[:-1], 0), [len(p) for p in array.parts])
    return JoinedRows([p[:e] for p, e in zip(array.parts, ends)])


def fill_in_passes(n_rows: int, batch_size: int, run_pass: Callable, empty):
    """``concatenate([run_pass(rows) for rows in slices of batch_size])`` written into one array.

    The array (numpy, or a torch tensor when the passes give tensors) is allocated at the first
    pass with its row shape and dtype; ``empty`` is the answer for 0 rows. Kept per-pass results
    would stay alive between the passes' large buffers, pinning glibc's heap so that it grows with
    the number of passes (docs/scale.md); one array does not."""
    out = None
    for start in range(0, n_rows, batch_size):
        rows = slice(start, min(start + batch_size, n_rows))
        part = run_pass(rows)
        if out is None:
            shape = (n_rows, *part.shape[1:])
            out = np.empty(shape, part.dtype) if isinstance(part, np.ndarray) else part.new_empty(shape)
        out[rows] = part
    return empty if out is None else out

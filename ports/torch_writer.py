"""Write PyTorch checkpoint files (torch.save's zip format) without torch.

The archive has the members torch.save writes and torch.load expects: `<name>/data.pkl` (a
protocol-2 pickle whose tensors refer to their storages by persistent id), one record
`<name>/data/<key>` per storage, aligned to 64 bytes as torch aligns them, and the small
`version`, `byteorder`, `.format_version` and `.storage_alignment` records. The pickle only
names the globals a weights-only torch.load accepts (OrderedDict, `_rebuild_tensor_v2` and
the typed storage classes).

`pickle_bytes` is the opcode writer underneath, open to any object built from plain values,
`Global` references, `Call`s and `PersistentId`s: enough to spell other checkpoint formats
(tests and benchmarks write NVIDIA-style network pickles with it).
"""

from __future__ import annotations

import collections
import io
import os
import secrets
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from jgan.errors import InputError
from jgan.ports.torch_pickle import TORCH_GLOBALS

__all__ = ["Call", "Global", "PersistentId", "pickle_bytes", "write_torch_file"]

ARCHIVE_NAME = "archive"
"""Directory of every record; torch.load takes it from the first member, whatever it is."""
STORAGE_ALIGNMENT = 64
"""torch aligns the data of each record to this many bytes (its `.storage_alignment`)."""
_ZIP64_THRESHOLD = 1 << 30
"""Records this large get zip64 local headers (zipfile would add them itself from 2 GiB)."""
_LOCAL_HEADER_SIZE = 30
_ZIP64_EXTRA_SIZE = 20
_PADDING_FIELD = b"FB"  # the extra-field id torch's writer pads local headers with


class Global(NamedTuple):
    """A global looked up by name on reading (the GLOBAL opcode): a class or function."""

    module: str
    name: str


class Call(NamedTuple):
    """`function(*args)` on reading (REDUCE): how pickles rebuild objects."""

    function: Any
    args: tuple


class PersistentId(NamedTuple):
    """A persistent id (BINPERSID), which torch.save uses to refer to a storage record."""

    pid: tuple


ORDERED_DICT = Global("collections", "OrderedDict")
REBUILD_TENSOR = Global("torch._utils", "_rebuild_tensor_v2")

_STORAGE_CLASSES = {
    stand_in.dtype: name
    for (module, name), stand_in in TORCH_GLOBALS.items()
    if module == "torch" and name.endswith("Storage") and name != "UntypedStorage"
}
"""numpy dtype -> torch's typed storage class (FloatStorage, ...), as the reader maps them."""


class _Emitter:
    """Pickle opcodes for a tree of plain values, Global, Call, PersistentId and arrays.

    Globals and arrays are memoized, so each global is spelled once and an array that occurs
    twice (tied weights) is read back as one object.
    """

    def __init__(self, out: BinaryIO, protocol: int, tensor: Callable[[np.ndarray], Any] | None):
        self.out, self.protocol, self.tensor = out, protocol, tensor
        self.memo: dict[tuple, int] = {}  # ("global", module, name) or ("array", id) -> slot
        self.kept: list[Any] = []  # memoized arrays stay alive, so their ids stay unique

    def dump(self, obj: Any) -> None:
        self.out.write(b"\x80" + bytes([self.protocol]))
        self.save(obj)
        self.out.write(b".")

    def _recall(self, key: tuple) -> bool:
        """Push a memoized object (BINGET / LONG_BINGET); False if it is not memoized yet."""
        index = self.memo.get(key)
        if index is None:
            return False
        self.out.write(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))
        return True

    def _remember(self, key: tuple) -> None:
        index = self.memo[key] = len(self.memo)
        self.out.write(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def save(self, obj: Any) -> None:
        write = self.out.write
        if obj is None:
            write(b"N")
        elif obj is True or obj is False:
            write(b"\x88" if obj else b"\x89")
        elif type(obj) is int:
            self._int(obj)
        elif type(obj) is float:
            write(b"G" + struct.pack(">d", obj))
        elif type(obj) is str:
            data = obj.encode("utf-8", "surrogatepass")
            write(b"X" + struct.pack("<I", len(data)) + data)
        elif type(obj) is bytes:
            if self.protocol < 3:
                raise InputError("bytes need pickle protocol 3 or higher")
            write(b"B" + struct.pack("<I", len(obj)) + obj)
        elif type(obj) is Global:
            if not self._recall(("global", *obj)):
                write(b"c" + f"{obj.module}\n{obj.name}\n".encode("ascii"))
                self._remember(("global", *obj))
        elif type(obj) is Call:
            self.save(obj.function)
            self.save(tuple(obj.args))
            write(b"R")
        elif type(obj) is PersistentId:
            self.save(obj.pid)
            write(b"Q")
        elif type(obj) is tuple:
            write(b"(")
            for item in obj:
                self.save(item)
            write(b"t")
        elif type(obj) is list:
            write(b"]")
            self._items(obj, b"e")
        elif type(obj) in (dict, collections.OrderedDict):
            if type(obj) is dict:
                write(b"}")
            else:
                self.save(Call(ORDERED_DICT, ()))
            self._items([value for pair in obj.items() for value in pair], b"u", group=2)
        elif isinstance(obj, np.ndarray) and self.tensor is not None:
            if not self._recall(("array", id(obj))):
                self.save(self.tensor(obj))
                self.kept.append(obj)
                self._remember(("array", id(obj)))
        else:
            raise InputError(
                f"cannot write a {type(obj).__name__} into a checkpoint: only dicts, "
                "OrderedDicts, lists, tuples, arrays, str, int, float, bool and None"
            )

    def _int(self, value: int) -> None:
        if 0 <= value < 1 << 8:
            self.out.write(b"K" + bytes([value]))
        elif 0 <= value < 1 << 16:
            self.out.write(b"M" + struct.pack("<H", value))
        elif -(1 << 31) <= value < 1 << 31:
            self.out.write(b"J" + struct.pack("<i", value))
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            if len(data) > 255:
                raise InputError(f"the integer {value} is too large to write")
            self.out.write(b"\x8a" + bytes([len(data)]) + data)

    def _items(self, values: list, opcode: bytes, group: int = 1) -> None:
        """APPENDS (values) or SETITEMS (keys and values, group 2) in batches of 1000 items, as
        the pickle module writes them."""
        batch = 1000 * group
        for start in range(0, len(values), batch):
            self.out.write(b"(")
            for value in values[start : start + batch]:
                self.save(value)
            self.out.write(opcode)


def pickle_bytes(
    obj: Any, *, protocol: int = 2, tensor: Callable[[np.ndarray], Any] | None = None
) -> bytes:
    """A pickle of `obj`: plain values and containers, `Global`, `Call` and `PersistentId`.

    `tensor(array)` gives what to write in place of each numpy array (arrays are refused
    without it). Protocol 2 is what torch.save uses; bytes need protocol 3 or higher.
    """
    if protocol not in (2, 3, 4):
        raise InputError(f"pickle protocol must be 2, 3 or 4; got {protocol}")
    out = io.BytesIO()
    _Emitter(out, protocol, tensor).dump(obj)
    return out.getvalue()


def _little_endian(array: np.ndarray) -> np.ndarray:
    """The C-contiguous little-endian elements of `array` (no copy when they already are)."""
    if array.dtype.newbyteorder("=") not in _STORAGE_CLASSES:
        raise InputError(
            f"cannot write an array of dtype {array.dtype}: torch storages hold "
            f"{sorted(str(dtype) for dtype in _STORAGE_CLASSES)}"
        )
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _padding(offset: int, name: str, zip64: bool) -> bytes:
    """The extra field that puts the data of a member whose header starts at `offset` on a
    STORAGE_ALIGNMENT boundary (torch's writer always adds one, at least its 4-byte head)."""
    header = _LOCAL_HEADER_SIZE + len(name.encode()) + (_ZIP64_EXTRA_SIZE if zip64 else 0) + 4
    size = -(offset + header) % STORAGE_ALIGNMENT
    return _PADDING_FIELD + struct.pack("<H", size) + b"Z" * size


def _write_member(archive: zipfile.ZipFile, offset: int, name: str, data) -> None:
    """One uncompressed member, its data aligned; `offset` is where its local header starts."""
    size = len(data)
    zip64 = size >= _ZIP64_THRESHOLD
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.extra = _padding(offset, name, zip64)
    info.file_size = size
    with archive.open(info, "w", force_zip64=zip64) as member:
        member.write(data)


def _write_archive(file: BinaryIO, obj: Any) -> None:
    storages: list[np.ndarray] = []  # raw bytes (uint8) of each storage

    def tensor(array: np.ndarray) -> Call:
        elements = _little_endian(array)
        storage_class = Global("torch", _STORAGE_CLASSES[elements.dtype.newbyteorder("=")])
        key = str(len(storages))
        storages.append(elements.reshape(-1).view(np.uint8))  # bfloat16 has no buffer format
        pid = PersistentId(("storage", storage_class, key, "cpu", elements.size))
        shape = tuple(int(n) for n in elements.shape)
        return Call(
            REBUILD_TENSOR, (pid, 0, shape, _c_strides(shape), False, Call(ORDERED_DICT, ()))
        )

    data_pkl = pickle_bytes(obj, tensor=tensor)
    prefix = f"{ARCHIVE_NAME}/"
    members = [
        ("data.pkl", data_pkl),
        (".format_version", b"1"),
        (".storage_alignment", str(STORAGE_ALIGNMENT).encode()),
        ("byteorder", b"little"),
        *((f"data/{key}", storage) for key, storage in enumerate(storages)),
        ("version", b"3\n"),
    ]
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            _write_member(archive, file.tell(), prefix + name, data)


def write_torch_file(path: str | os.PathLike, obj: Any) -> str:
    """Writes `obj` as a torch.save zip archive at `path`, atomically; returns the path.

    `obj` is a tree of dicts, OrderedDicts, lists and tuples whose leaves are numpy arrays
    (written as CPU tensors of the same dtype and shape), str, int, float, bool or None.
    `torch.load(path, weights_only=True)` reads it back.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    staging = os.path.join(directory, f".jgan-{secrets.token_hex(8)}.tmp")
    # os.open, not mkstemp: the file gets the permissions open() gives (0666 less the umask)
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            _write_archive(file, obj)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return path

"""Read PyTorch checkpoint files into numpy arrays, without torch and without running their code.

Both ``torch.save`` formats are read: the zip archive of torch >= 1.6 and the older stream of
pickles (the LPIPS weights, for one). Unpickling goes through an allowlist that maps each global a
checkpoint may name to a harmless stand-in, so a file can describe tensors and plain containers
but can never make Python call anything else: a checkpoint is data, not a program.
"""

from __future__ import annotations

import collections
import functools
import io
import math
import operator
import os
import pickle
import pickletools
import re
import reprlib
import struct
import types
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, NamedTuple

import ml_dtypes
import numpy as np

from jgan.errors import CheckpointError

__all__ = [
    "LEGACY_MAGIC_NUMBER",
    "TORCH_GLOBALS",
    "TorchDtype",
    "read_pickle_file",
    "read_torch_file",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (non-zip) torch.save file."""
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"
MAX_DEPTH = 100
"""Deepest nesting of containers a checkpoint may have (NVIDIA's network pickles, the deepest
known, reach 34 as _check_opcodes counts): deeper ones could exhaust the C stack when Python
hashes or walks them."""
MAX_ENTRIES = 10**7
"""Most entries a walk over a checkpoint's contents may visit, counting a shared container once
per reference to it: a few hundred bytes of pickle can describe containers that refer twice
to the next, 2**n entries for whoever walks them without a memo."""

# What malformed input makes the standard library raise while parsing; all become CheckpointError.
_PARSE_ERRORS = (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    IndexError,
    struct.error,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    MemoryError,
    RecursionError,
    NotImplementedError,
    OSError,
)


class _Invalid(Exception):
    """Bad checkpoint content; the message completes the sentence '<path> ...'."""


class _RefusedGlobal(_Invalid):
    """The file names a global outside the allowlist."""


def _corrupt(detail: str) -> _Invalid:
    return _Invalid(f"is truncated or corrupt: {detail}")


class TorchDtype(NamedTuple):
    """Stand-in for a torch dtype or typed storage class: its torch name and numpy dtype.

    A tuple, so it is immutable: a BUILD opcode in a file cannot alter the shared instance.
    """

    name: str
    dtype: np.dtype


_TORCH_DTYPES = {
    name: TorchDtype(name, np.dtype(numpy_type))
    for name, numpy_type in {
        "float64": np.float64,
        "float32": np.float32,
        "float16": np.float16,
        "bfloat16": ml_dtypes.bfloat16,
        "complex64": np.complex64,
        "complex128": np.complex128,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint64": np.uint64,
        "uint32": np.uint32,
        "uint16": np.uint16,
        "uint8": np.uint8,
        "bool": np.bool_,
    }.items()
}

_STORAGE_CLASS_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _StorageRef(NamedTuple):
    """The elements of one storage record that a tensor may view (legacy views start later)."""

    key: str
    dtype: np.dtype
    first_element: int
    numel: int


class _PendingTensor(NamedTuple):
    """A tensor as the pickle describes it; its array is built once every record has been read."""

    storage: _StorageRef
    dtype: np.dtype
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


class _GlobalMarker(NamedTuple):
    """Stand-in for a global that only serves as an argument, such as numpy.ndarray."""

    module: str
    name: str


_NUMPY_NDARRAY = _GlobalMarker("numpy", "ndarray")


def _sizes(values: Any, what: str) -> tuple[int, ...]:
    """Non-negative ints from the file, or an error naming `what`."""
    try:
        sizes = tuple(operator.index(value) for value in values)
    except TypeError:
        raise _corrupt(f"{what} {reprlib.repr(values)} is not a tuple of integers") from None
    if any(size < 0 for size in sizes):
        raise _corrupt(f"{what} {sizes} has a negative entry")
    return sizes


def _pending_tensor(storage, storage_offset, size, stride, dtype: np.dtype | None):
    """A tensor viewing part of a storage, as elements of `dtype` (default: the storage's)."""
    if not isinstance(storage, _StorageRef):
        raise _corrupt(f"a tensor refers to {reprlib.repr(storage)} instead of a storage")
    (offset,) = _sizes((storage_offset,), "storage offset")
    shape, strides = _sizes(size, "tensor size"), _sizes(stride, "tensor stride")
    if len(shape) != len(strides):
        raise _corrupt(f"tensor size {shape} and stride {strides} differ in length")
    return _PendingTensor(
        storage, storage.dtype if dtype is None else dtype, offset, shape, strides
    )


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Stand-in for torch._utils._rebuild_tensor, the one of torch < 0.4."""
    return _pending_tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
    """Stand-in for torch._utils._rebuild_tensor_v2; autograd state has no numpy counterpart."""
    return _pending_tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    """Stand-in for torch._utils._rebuild_tensor_v3: a tensor of its own dtype over raw bytes."""
    if not isinstance(dtype, TorchDtype):
        raise _corrupt(f"tensor dtype {reprlib.repr(dtype)} is not a torch dtype")
    return _pending_tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """Stand-in for torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    return data


def _latin1_bytes(text, encoding):
    """Stand-in for _codecs.encode, which protocol-2 pickles use to spell bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _corrupt(f"_codecs.encode is only read as latin-1 text to bytes, not {encoding!r}")
    return text.encode("latin-1")


class _PendingNumpyDtype:
    """Stand-in for numpy.dtype(name): plain numbers, bools and strings only, never objects."""

    def __init__(self, name):
        if not (isinstance(name, str) and re.fullmatch(r"[a-zA-Z]\d*", name)):
            raise _Invalid(f"holds the numpy dtype {reprlib.repr(name)}, which is refused")
        dtype = np.dtype(name)
        if dtype.kind not in "biufcSU":
            raise _Invalid(
                f"holds the numpy dtype {name!r}, which is refused: only numbers, bools and "
                "strings are allowed"
            )
        self.dtype = dtype

    def __setstate__(self, state):
        """BUILD gives (version, byte order, subarray, names, fields, ...): keep the order."""
        if not (
            isinstance(state, tuple)
            and len(state) >= 5
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
        ):
            raise _corrupt(f"numpy dtype state {reprlib.repr(state)} is not a plain dtype's")
        self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(name, align=False, copy=True):
    """Stand-in for numpy.dtype."""
    return _PendingNumpyDtype(name)


def _numpy_scalar(dtype, data):
    """Stand-in for numpy's scalar(dtype, bytes), decoded with np.frombuffer."""
    if not isinstance(dtype, _PendingNumpyDtype) or not isinstance(data, bytes):
        raise _corrupt("a numpy scalar is not made of a dtype and bytes")
    if len(data) != dtype.dtype.itemsize:
        raise _corrupt(f"a numpy {dtype.dtype} scalar has {len(data)} bytes")
    return np.frombuffer(data, dtype.dtype)[0]


class _PendingNumpyArray:
    """Stand-in for a pickled numpy array: BUILD hands it shape, dtype and raw bytes."""

    array: np.ndarray | None = None

    def __setstate__(self, state):
        """Build the array with np.frombuffer; object arrays (pickled as lists) are refused."""
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _corrupt("a numpy array state is not (version, shape, dtype, order, data)")
        _version, shape, dtype, fortran_order, data = state
        if not isinstance(dtype, _PendingNumpyDtype):
            raise _corrupt(f"a numpy array has the dtype {reprlib.repr(dtype)}")
        if not isinstance(data, bytes):
            raise _Invalid("holds a numpy array of Python objects, which is refused")
        shape = _sizes(shape, "numpy array shape")
        if len(data) != math.prod(shape) * dtype.dtype.itemsize:
            raise _corrupt(f"a numpy array of shape {shape} has {len(data)} bytes")
        flat = np.frombuffer(data, dtype.dtype)
        grid = flat.reshape(shape, order="F" if fortran_order else "C")
        self.array = grid.astype(dtype.dtype.newbyteorder("="), order="C")


def _numpy_reconstruct(array_type, shape, typecode):
    """Stand-in for numpy's _reconstruct: an empty plain ndarray that BUILD fills in."""
    if array_type is not _NUMPY_NDARRAY:
        raise _Invalid(f"holds a numpy array of type {reprlib.repr(array_type)}, which is refused")
    return _PendingNumpyArray()


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,  # protocol 2, which torch.save uses, spells Python 2 names
        ("__builtin__", "frozenset"): frozenset,
        ("argparse", "Namespace"): types.SimpleNamespace,
        ("_codecs", "encode"): _latin1_bytes,
        ("torch", "Size"): tuple,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "UntypedStorage"): TorchDtype("UntypedStorage", np.dtype(np.uint8)),
        ("torch.storage", "UntypedStorage"): TorchDtype("UntypedStorage", np.dtype(np.uint8)),
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy", "ndarray"): _NUMPY_NDARRAY,
    }
    for name, element_type in _TORCH_DTYPES.items():
        allowed["torch", name] = element_type
    for name, element_name in _STORAGE_CLASS_DTYPES.items():
        allowed["torch", name] = TorchDtype(name, _TORCH_DTYPES[element_name].dtype)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[module, "scalar"] = _numpy_scalar
        allowed[module, "_reconstruct"] = _numpy_reconstruct
    return allowed


TORCH_GLOBALS: Mapping[tuple[str, str], object] = types.MappingProxyType(_allowed_globals())
"""(module, name) of each global a checkpoint may name, mapped to the stand-in it becomes."""


class _StandIn(NamedTuple):
    """A stand-in function as the unpickler hands it out: immutable, so that no opcode can
    alter it (a tuple has no attributes to set, and BUILD is refused)."""

    name: str
    function: Callable

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __setstate__(self, state):
        raise _corrupt(f"a BUILD opcode aims at the stand-in for {self.name}, which is refused")


class _BoundedReader:
    """Reads of a file that never ask for more bytes than it has left.

    Pickle opcodes carry their own lengths, and what reads them (the C unpickler, pickletools)
    allocates that length before reading: a 20-byte file could claim a string of 2**40 bytes.
    """

    def __init__(self, file: BinaryIO):
        self._file, self._left = file, _bytes_left(file)

    def read(self, size: int) -> bytes:
        self.check(size)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._file.readline()
        self._left -= len(line)
        return line

    def check(self, size: int) -> None:
        if size > self._left:
            raise _corrupt(f"a pickle needs {size} more bytes where {self._left} are left")


_REFUSED_OPCODES = {"EXT1", "EXT2", "EXT4"}
"""Opcodes that reach globals through copyreg's process-wide extension cache, not find_class."""
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_MEMO_LEAD = 1 << 16
"""How far memo indices may run ahead of the opcodes so far (writers number them in order;
hand-made pickles may skip some): the C unpickler sizes its memo by the highest index."""


def _check_opcodes(file: BinaryIO) -> None:
    """Walks the opcodes of the pickle at the position of `file` before the unpickler runs them,
    and returns to that position.

    Refused, because the C unpickler would act on them before any stand-in could: lengths
    (of strings, bytes and frames) beyond the end of the file and memo indices far beyond the
    opcodes so far (it allocates both up front), extension codes (EXT1/2/4), and containers
    nested deeper than MAX_DEPTH or holding more than MAX_ENTRIES entries counted through
    shared references (it hashes dict keys and set items recursively in C, with no memo).
    Both are followed on a model of the unpickler's stack that holds, for each value, its
    (depth, entries).
    """
    start = file.tell()
    stack: list[tuple[int, int]] = []
    marks: list[int] = []
    memo: dict[int, tuple[int, int]] = {}
    reader = _BoundedReader(file)
    for count, (opcode, arg, _) in enumerate(pickletools.genops(reader)):
        name = opcode.name
        if name == "FRAME":  # genops reads the length, the unpickler then reads the frame
            reader.check(arg)
        if name in _REFUSED_OPCODES:
            raise _Invalid(
                f"uses the copyreg extension code {arg} ({name}), which is refused: only "
                "globals named in the file are looked up, against the allowlist"
            )
        if name == "MARK":
            marks.append(len(stack))
            continue
        before = opcode.stack_before
        if pickletools.markobject in before:
            if not marks:
                raise _corrupt(f"{name} without a MARK")
            cut = marks.pop() - before.index(pickletools.markobject)
        else:
            cut = len(stack) - len(before)
        if cut < 0:
            raise _corrupt(f"{name} finds too few values on the pickle's stack")
        popped = stack[cut:]
        del stack[cut:]
        if name in _MEMO_PUTS or name == "MEMOIZE":
            index = len(memo) if name == "MEMOIZE" else arg
            if not (stack or popped) or index > count + _MEMO_LEAD:
                raise _corrupt(f"{name} {index} after {count} opcodes")
            stack += popped
            memo[index] = stack[-1]
        elif name in _MEMO_GETS:
            if arg not in memo:
                raise _corrupt(f"{name} {arg} reads an empty memo slot")
            stack.append(memo[arg])
        elif name == "DUP":
            stack += popped * 2
        else:
            parts = popped[name in _MUTATORS :]  # a mutator's container stays on the stack
            depth = 1 + max((d for d, _ in parts), default=0)
            entries = 1 + sum(e for _, e in parts)
            if name in _MUTATORS:
                depth, entries = max(depth, popped[0][0]), entries + popped[0][1] - 1
            _check_size(depth, entries)
            stack += [(depth, entries)] * len(opcode.stack_after)
    file.seek(start)


def _check_size(depth: int, entries: int) -> None:
    if depth > MAX_DEPTH:
        raise _Invalid(f"nests containers more than {MAX_DEPTH} levels deep, which is refused")
    if entries > MAX_ENTRIES:
        raise _Invalid(
            f"refers to shared containers so often that a walk over it visits more than "
            f"{MAX_ENTRIES} entries, which is refused"
        )


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that finds globals only in an allowlist and storages only through a callback."""

    def __init__(
        self,
        file: BinaryIO,
        allowed_globals: Mapping[tuple[str, str], object],
        load_storage: Callable[[Any], _StorageRef] | None = None,
    ):
        super().__init__(file, encoding="utf-8")
        self._file = file
        self._allowed_globals = allowed_globals
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            stand_in = self._allowed_globals[module, name]
        except KeyError:
            raise _RefusedGlobal(
                f"holds the global '{module}.{name}', which is refused: only tensors and plain "
                "containers are allowed, and nothing in a checkpoint is executed"
            ) from None
        if isinstance(stand_in, types.FunctionType):
            return _StandIn(f"{module}.{name}", stand_in)  # a function could be altered
        return stand_in

    def load(self):
        _check_opcodes(self._file)
        return super().load()

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise _corrupt(f"unexpected persistent id {reprlib.repr(pid)}")
        return self._load_storage(pid)


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise _corrupt(f"{what} {reprlib.repr(value)} is not text")
    return value


def _storage_id(pid: Any, length: int) -> tuple:
    """The fields of a ('storage', ...) persistent id of the expected length."""
    if not (isinstance(pid, tuple) and len(pid) == length and _text(pid[0], "id") == "storage"):
        raise _corrupt(f"unknown persistent id {reprlib.repr(pid)}")
    return pid[1:]


def _storage_ref(element_type: Any, key: Any, numel: Any) -> _StorageRef:
    if not isinstance(element_type, TorchDtype):
        raise _corrupt(f"storage type {reprlib.repr(element_type)} is not a torch storage or dtype")
    (numel,) = _sizes((numel,), "storage size")
    return _StorageRef(_text(key, "storage key"), element_type.dtype, 0, numel)


def _tensor_array(tensor: _PendingTensor, records: Mapping[str, bytes], byteorder: str):
    """A C-contiguous, native-order copy of the elements `tensor` views in its storage record."""
    storage = tensor.storage
    record = records.get(storage.key)
    if record is None:
        raise _corrupt(f"the storage record {storage.key!r} is missing")
    start = storage.first_element * storage.dtype.itemsize
    stop = start + storage.numel * storage.dtype.itemsize
    if stop > len(record):
        raise _corrupt(f"storage {storage.key!r} needs {stop} bytes, its record has {len(record)}")
    itemsize = tensor.dtype.itemsize
    extents = [(n - 1) * step for n, step in zip(tensor.shape, tensor.strides, strict=True)]
    span = 0 if 0 in tensor.shape else 1 + sum(extents)
    if (tensor.offset + span) * itemsize > stop - start:
        raise _corrupt(
            f"a tensor of size {tensor.shape}, stride {tensor.strides} and offset {tensor.offset} "
            f"needs {(tensor.offset + span) * itemsize} bytes of storage {storage.key!r}, "
            f"which has {stop - start}"
        )
    if math.prod(tensor.shape) * itemsize > stop - start:
        raise _Invalid(
            f"holds a tensor of size {reprlib.repr(tensor.shape)} that repeats the {stop - start} "
            f"bytes of storage {storage.key!r} (overlapping or zero strides), which is refused: "
            f"it would take {math.prod(tensor.shape) * itemsize} bytes"
        )
    view = np.ndarray(
        tensor.shape,
        dtype=tensor.dtype.newbyteorder(byteorder),
        buffer=memoryview(record)[start:stop],
        offset=tensor.offset * itemsize,
        strides=tuple(stride * itemsize for stride in tensor.strides),
    )
    return view.astype(tensor.dtype.newbyteorder("="), order="C")


def _resolve(tree: Any, records: Mapping[str, bytes], byteorder: str) -> Any:
    """Replace every stand-in the unpickler left in `tree` by the numpy object it describes.

    Dicts, lists and namespaces are updated in place and tuples rebuilt; an object seen twice
    (shared by the pickle's memo) gets one result. Contents deeper than MAX_DEPTH, or with
    more than MAX_ENTRIES entries in a walk, are refused.
    """
    done: dict[int, tuple[Any, Any, int]] = {}  # id -> (object, result, entries in a walk)

    def visit(obj: Any, depth: int = 0) -> tuple[Any, int]:
        if id(obj) in done:
            return done[id(obj)][1:]
        _check_size(depth, 0)  # containers filled after they were shared escape _check_opcodes
        entries = 1
        if isinstance(obj, (dict, list, types.SimpleNamespace)):
            done[id(obj)] = obj, obj, entries  # registered first: a container may hold itself
            items = vars(obj) if isinstance(obj, types.SimpleNamespace) else obj
            for key in list(items.keys() if isinstance(items, dict) else range(len(items))):
                items[key], count = visit(items[key], depth + 1)
                entries += count
            result = obj
        elif isinstance(obj, _PendingTensor):
            result = _tensor_array(obj, records, byteorder)
        elif isinstance(obj, _PendingNumpyArray):
            if obj.array is None:
                raise _corrupt("a numpy array has no data")
            result = obj.array
        elif isinstance(obj, _PendingNumpyDtype):
            result = obj.dtype
        elif isinstance(obj, _StorageRef):  # a storage saved on its own: its elements, flat
            whole = _PendingTensor(obj, obj.dtype, 0, (obj.numel,), (1,))
            result = _tensor_array(whole, records, byteorder)
        elif type(obj) is tuple:
            visited = [visit(item, depth + 1) for item in obj]
            result = tuple(item for item, _ in visited)
            entries += sum(count for _, count in visited)
        else:
            return obj, entries
        _check_size(depth, entries)
        done[id(obj)] = obj, result, entries
        return result, entries

    return visit(tree)[0]


def _read_zip(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> Any:
    """The contents of a torch >= 1.6 zip checkpoint: <dir>/data.pkl plus <dir>/data/<key>."""
    with zipfile.ZipFile(file) as archive:
        _check_member_names(archive.namelist())
        pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if not pickles:
            raise _Invalid("is not a PyTorch checkpoint: a zip archive without <dir>/data.pkl")
        if len(pickles) > 1:
            raise _Invalid(
                f"has {len(pickles)} data.pkl records ({', '.join(pickles)}), one expected"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = _archive_byteorder(archive, prefix)
        records: dict[str, bytes] = {}

        def load_storage(pid: Any) -> _StorageRef:
            element_type, key, _location, numel = _storage_id(pid, 5)
            storage = _storage_ref(element_type, key, numel)
            if storage.key not in records:
                records[storage.key] = _read_record(
                    archive, f"{prefix}data/{storage.key}", storage.numel * storage.dtype.itemsize
                )
            return storage

        data_pkl = io.BytesIO(_read_member(archive, archive.getinfo(pickles[0])))
        tree = _CheckpointUnpickler(data_pkl, allowed, load_storage).load()
    return _resolve(tree, records, byteorder)


def _archive_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    """'<' or '>' from the <dir>/byteorder record; archives without one are little-endian."""
    try:
        info = archive.getinfo(prefix + "byteorder")
    except KeyError:
        return "<"
    recorded = _read_member(archive, info).decode("ascii", "replace").strip()
    if recorded not in ("little", "big"):
        raise _corrupt(f"{prefix}byteorder says {recorded!r}, neither 'little' nor 'big'")
    return "<" if recorded == "little" else ">"


def _read_record(archive: zipfile.ZipFile, name: str, size: int) -> bytes:
    """The first `size` bytes of a storage record, read once and never more than needed."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _corrupt(f"the storage record {name} is missing") from None
    if info.file_size < size:
        raise _corrupt(f"the storage record {name} has {info.file_size} bytes, its storage {size}")
    data = _read_member(archive, info, size)
    if len(data) < size:  # the archive ends before the size its directory gives
        raise _corrupt(f"the storage record {name} has {len(data)} bytes, its storage {size}")
    return data


def _check_member_names(names: list[str]) -> None:
    """Refuses names that would escape a directory if extracted (nothing ever is) and duplicates,
    which readers resolve differently."""
    for name in names:
        if name.startswith("/") or "\\" in name or ".." in name.split("/") or ":" in name:
            raise _Invalid(
                f"has the member {name!r}, which is refused: a torch.save archive only holds "
                "relative <dir>/<record> names"
            )
    if len(set(names)) < len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise _Invalid(f"has several members named {reprlib.repr(duplicates)}, which is refused")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int = -1) -> bytes:
    """The first `size` bytes (all when -1) of an uncompressed, unencrypted archive member.

    torch.save stores every record as it is; a compressed one is refused rather than
    inflated, since a few bytes of it could inflate to gigabytes.
    """
    if info.flag_bits & 0x1:
        raise _Invalid(f"has the encrypted record {info.filename}, which is refused")
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Invalid(
            f"has the compressed record {info.filename}, which is refused: torch.save stores "
            "records uncompressed (re-zip it with `zip -0`)"
        )
    with archive.open(info) as member:
        return member.read(size)


def _read_legacy(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> Any:
    """The contents of a legacy torch.save stream, positioned after its magic number.

    Then come the protocol version, a sys_info dict, the main pickle, the list of storage keys,
    and per key an 8-byte little-endian element count followed by the little-endian elements.
    """
    version = _CheckpointUnpickler(file, {}).load()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise _corrupt(f"legacy protocol version {reprlib.repr(version)} is not 1001")
    _CheckpointUnpickler(file, {}).load()  # sys_info: sizes and byte order of the saving machine
    roots: dict[str, _StorageRef] = {}

    def load_storage(pid: Any) -> _StorageRef:
        element_type, key, _location, numel, view = _storage_id(pid, 6)
        root = roots.setdefault(_text(key, "storage key"), _storage_ref(element_type, key, numel))
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _corrupt(f"storage view {reprlib.repr(view)} is not (key, offset, size)")
        first, count = _sizes(view[1:], "storage view")
        if first + count > root.numel:
            raise _corrupt(f"a view of {count} elements at {first} overruns storage {root.key!r}")
        return root._replace(first_element=first, numel=count)

    tree = _CheckpointUnpickler(file, allowed, load_storage).load()
    keys = _CheckpointUnpickler(file, {}).load()
    if not isinstance(keys, list):
        raise _corrupt("the list of storage keys is missing")
    remaining = _bytes_left(file)
    records: dict[str, bytes] = {}
    for key in keys:
        storage = roots.get(_text(key, "storage key"))
        if storage is None:
            raise _corrupt(f"the storage record {key!r} belongs to no tensor")
        header = file.read(8)
        (count,) = struct.unpack("<q", header) if len(header) == 8 else (-1,)
        if count != storage.numel:
            raise _corrupt(
                f"storage record {storage.key!r} has {count} elements, not {storage.numel}"
            )
        size = count * storage.dtype.itemsize
        remaining -= 8 + size
        if remaining < 0:
            raise _corrupt(f"the file ends inside storage record {storage.key!r}")
        records[storage.key] = file.read(size)
    return _resolve(tree, records, "<")


def _bytes_left(file: BinaryIO) -> int:
    """Bytes between the position of `file` and its end; the position is kept."""
    position = file.tell()
    end = file.seek(0, os.SEEK_END)
    file.seek(position)
    return end - position


def _starts_with_legacy_magic(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> bool:
    """Whether the first pickle is the legacy magic number; a refused global is still reported."""
    try:
        first = _CheckpointUnpickler(file, allowed).load()
    except _RefusedGlobal:
        raise
    except (_Invalid, *_PARSE_ERRORS):
        return False
    return type(first) is int and first == LEGACY_MAGIC_NUMBER


def read_torch_file(
    path: str | os.PathLike, extra_globals: Mapping[tuple[str, str], object] | None = None
) -> Any:
    """The object a torch.save file holds, with every tensor as a numpy array; runs nothing.

    Tensors (and Parameters) become C-contiguous native-order numpy arrays that own their memory;
    OrderedDicts, lists, tuples, sets and numpy values are kept, argparse.Namespace becomes
    types.SimpleNamespace. Any other global raises CheckpointError, unless ``extra_globals`` maps
    its (module, name) to a safe stand-in that the pickle may then call or instantiate. Stand-ins
    run before tensors are built, so they see tensors as opaque placeholders and should keep them
    in dicts, lists, tuples or namespaces: the arrays are put in their place there.
    """
    allowed = {**TORCH_GLOBALS, **(extra_globals or {})}
    return _read_file(path, functools.partial(_read_torch_save, allowed=allowed))


def read_pickle_file(
    path: str | os.PathLike, extra_globals: Mapping[tuple[str, str], object] | None = None
) -> Any:
    """The object a plain pickle file (pickle.dump, not torch.save) holds; runs nothing.

    Read like read_torch_file. A tensor pickled outside torch.save carries its storage as the
    bytes of a nested torch.save file (torch.storage._load_from_bytes), as in NVIDIA's network
    pickles: those bytes are read with the torch.save allowlist alone, so nesting stops there.
    """
    allowed = {**TORCH_GLOBALS, **(extra_globals or {})}
    return _read_file(path, functools.partial(_read_plain_pickle, allowed=allowed))


def _read_torch_save(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> Any:
    if file.read(len(_ZIP_SIGNATURE)) == _ZIP_SIGNATURE:
        file.seek(0)
        return _read_zip(file, allowed)
    file.seek(0)
    if not _starts_with_legacy_magic(file, allowed):
        raise _Invalid(
            "is not a PyTorch checkpoint: neither a torch.save zip archive nor a legacy "
            "torch.save file"
        )
    return _read_legacy(file, allowed)


def _read_plain_pickle(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> Any:
    records: dict[str, np.ndarray] = {}

    def load_from_bytes(data: Any) -> _StorageRef:
        if not isinstance(data, bytes):
            raise _corrupt(f"a nested storage is {reprlib.repr(data)} instead of bytes")
        try:
            storage = _read_torch_save(io.BytesIO(data), TORCH_GLOBALS)
        except _RefusedGlobal:
            raise
        except _Invalid as error:
            raise _Invalid(f"has a nested storage that {error}") from error
        if not (isinstance(storage, np.ndarray) and storage.ndim == 1):
            raise _corrupt(f"a nested torch.save file holds {type(storage).__name__}, no storage")
        key = f"nested storage {len(records)}"
        records[key] = storage.view(np.uint8)
        return _StorageRef(key, storage.dtype, 0, storage.size)

    nested = {**allowed, ("torch.storage", "_load_from_bytes"): load_from_bytes}
    tree = _CheckpointUnpickler(file, nested).load()
    return _resolve(tree, records, "=")


def _read_file(path: str | os.PathLike, read: Callable[[BinaryIO], Any]) -> Any:
    """read(file) on the opened file; every failure becomes a CheckpointError naming the file."""
    source = os.fspath(path)
    try:
        file = open(source, "rb")
    except FileNotFoundError as error:
        raise CheckpointError(f"{source} does not exist") from error
    except OSError as error:
        raise CheckpointError(f"{source} cannot be read: {error}") from error
    with file:
        try:
            return read(file)
        except CheckpointError:
            raise
        except _Invalid as error:
            raise CheckpointError(f"{source} {error}") from error
        except _PARSE_ERRORS as error:
            raise CheckpointError(
                f"{source} is truncated or corrupt: {type(error).__name__}: {error}"
            ) from error

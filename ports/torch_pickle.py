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

__all__ = ["LEGACY_MAGIC_NUMBER", "TORCH_GLOBALS", "TorchDtype", "read_torch_file"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (non-zip) torch.save file."""
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"

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


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that finds globals only in an allowlist and storages only through a callback."""

    def __init__(
        self,
        file: BinaryIO,
        allowed_globals: Mapping[tuple[str, str], object],
        load_storage: Callable[[Any], _StorageRef] | None = None,
    ):
        super().__init__(file, encoding="utf-8")
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
            # A fresh wrapper, so that a BUILD opcode aimed at it cannot alter the shared function.
            return functools.partial(stand_in)
        return stand_in

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
    (shared by the pickle's memo) gets one result.
    """
    done: dict[int, tuple[Any, Any]] = {}  # id -> (object, result); keeps the object alive

    def visit(obj: Any) -> Any:
        if id(obj) in done:
            return done[id(obj)][1]
        if isinstance(obj, (dict, list, types.SimpleNamespace)):
            done[id(obj)] = obj, obj  # registered first: a container may hold itself
            items = vars(obj) if isinstance(obj, types.SimpleNamespace) else obj
            for key in list(items.keys() if isinstance(items, dict) else range(len(items))):
                items[key] = visit(items[key])
            return obj
        if isinstance(obj, _PendingTensor):
            result = _tensor_array(obj, records, byteorder)
        elif isinstance(obj, _PendingNumpyArray):
            if obj.array is None:
                raise _corrupt("a numpy array has no data")
            result = obj.array
        elif isinstance(obj, _PendingNumpyDtype):
            result = obj.dtype
        elif type(obj) is tuple:
            result = tuple(visit(item) for item in obj)
        else:
            return obj
        done[id(obj)] = obj, result
        return result

    return visit(tree)


def _read_zip(file: BinaryIO, allowed: Mapping[tuple[str, str], object]) -> Any:
    """The contents of a torch >= 1.6 zip checkpoint: <dir>/data.pkl plus <dir>/data/<key>."""
    with zipfile.ZipFile(file) as archive:
        pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if not pickles:
            raise _Invalid("is not a PyTorch checkpoint: a zip archive without <dir>/data.pkl")
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

        data_pkl = io.BytesIO(archive.read(pickles[0]))
        tree = _CheckpointUnpickler(data_pkl, allowed, load_storage).load()
    return _resolve(tree, records, byteorder)


def _archive_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    """'<' or '>' from the <dir>/byteorder record; archives without one are little-endian."""
    try:
        recorded = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
    except KeyError:
        return "<"
    if recorded not in ("little", "big"):
        raise _corrupt(f"{prefix}byteorder says {recorded!r}, neither 'little' nor 'big'")
    return "<" if recorded == "little" else ">"


def _read_record(archive: zipfile.ZipFile, name: str, size: int) -> bytes:
    """The first `size` bytes of a storage record, read once and never more than needed."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _corrupt(f"the storage record {name} is missing") from None
    with archive.open(info) as record:
        data = record.read(size)
    if len(data) < size:
        raise _corrupt(f"the storage record {name} has {len(data)} bytes, its storage {size}")
    return data


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
    remaining = os.fstat(file.fileno()).st_size - file.tell()
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
    source = os.fspath(path)
    allowed = {**TORCH_GLOBALS, **(extra_globals or {})}
    try:
        file = open(source, "rb")
    except FileNotFoundError as error:
        raise CheckpointError(f"{source} does not exist") from error
    except OSError as error:
        raise CheckpointError(f"{source} cannot be read: {error}") from error
    with file:
        try:
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
        except CheckpointError:
            raise
        except _Invalid as error:
            raise CheckpointError(f"{source} {error}") from error
        except _PARSE_ERRORS as error:
            raise CheckpointError(
                f"{source} is truncated or corrupt: {type(error).__name__}: {error}"
            ) from error

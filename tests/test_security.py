"""A corpus of hostile and broken checkpoint files, built here (no binaries are committed).

Each file is refused with a CheckpointError whose message names the problem; nothing in it
runs (a sentinel file that a successful attack would create stays absent, and no audited
operation such as os.system, subprocess.Popen, exec of dynamic code or a file opened for
writing happens during the read); nothing is extracted; and the read stays in bounded memory
however large the sizes the file declares.
"""

import copyreg
import io
import os
import pickle
import resource
import struct
import sys
import tracemalloc
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
import pytest

import jgan
import jgan.ports.formats  # noqa: F401 (every port imported before the audited reads)
from jgan.ports import torch_pickle
from jgan.ports.nvidia_pickle import read_network_pickle
from jgan.ports.torch_pickle import LEGACY_MAGIC_NUMBER, read_pickle_file, read_torch_file
from jgan.ports.torch_writer import Call, Global, PersistentId, pickle_bytes, write_torch_file

MEMORY_LIMIT = 64 << 20
"""Bytes a read of any corpus file may allocate: every file here is at most a few MB."""
COMMAND = "touch {marker}"

# --- Audited operations: a process-wide hook that records only while a read runs.

_WATCHED = {
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.kill",
    "os.remove",
    "os.rmdir",
    "os.rename",
    "shutil.rmtree",
    "subprocess.Popen",
    "pickle.find_class",  # the standard find_class: a bypass of the allowlist
    "ctypes.dlopen",
    "socket.connect",
    "builtins.input",
}
_recording: list | None = None


def _audit(event, args):
    if _recording is None:
        return
    if event in _WATCHED:
        _recording.append((event, args))
    elif event == "exec" and args[0].co_filename.startswith("<"):
        _recording.append((event, args))  # code from a string, not from a module's file
    elif event == "compile" and str(args[1]).startswith("<"):
        _recording.append((event, args))
    elif event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR):
        _recording.append((event, args))


sys.addaudithook(_audit)


def refused(read, path, message):
    """read(path) raises CheckpointError matching `message`, runs and writes nothing, and
    allocates less than MEMORY_LIMIT (traced) without growing the peak resident size by more."""
    global _recording
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _recording = []
    tracemalloc.start()
    try:
        with pytest.raises(jgan.CheckpointError, match=message):
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        events, _recording = _recording, None
    assert events == [], events
    assert peak < MEMORY_LIMIT, f"{peak} bytes allocated"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert grown < MEMORY_LIMIT, f"peak RSS grew by {grown} bytes"


# --- File builders.


class Member(NamedTuple):
    """A zip member exactly as written: `data` as stored (deflated already for method 8)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    size: int | None = None  # uncompressed size; len(data) by default
    crc: int | None = None
    flags: int = 0


def zip_archive(members):
    """A zip file written field by field, so that any name, size or method can be declared."""
    out, directory = io.BytesIO(), []
    for m in members:
        name = m.name.encode()
        size = len(m.data) if m.size is None else m.size
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        fields = struct.pack("<HHHHHIII", 20, m.flags, m.method, 0, 0x21, crc, len(m.data), size)
        offset = out.tell()
        out.write(b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + m.data)
        entry = struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, offset)
        directory.append(b"PK\x01\x02" + struct.pack("<H", 20) + fields + entry + name)
    start = out.tell()
    out.write(b"".join(directory))
    count = len(members)
    end = struct.pack("<HHHHIIH", 0, 0, count, count, out.tell() - start, start, 0)
    return out.getvalue() + b"PK\x05\x06" + end


def torch_zip(data_pkl, records=None, extra=()):
    """A torch.save archive around a data.pkl, with storage records {key: bytes}."""
    members = [Member("archive/data.pkl", data_pkl), Member("archive/byteorder", b"little")]
    members += [Member(f"archive/data/{key}", data) for key, data in (records or {}).items()]
    return zip_archive([*members, *extra, Member("archive/version", b"3\n")])


def legacy(main_pickle, keys=(), tail=b"", magic=LEGACY_MAGIC_NUMBER, version=1001):
    """A legacy torch.save stream: magic, version, sys_info, main pickle, the list of storage
    `keys` (a list, or the bytes of another pickle), then `tail` (the records)."""
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    head = pickle.dumps(magic, protocol=2) + pickle.dumps(version, protocol=2) + sys_info
    keys = keys if isinstance(keys, bytes) else pickle.dumps(list(keys), protocol=2)
    return head + main_pickle + keys + tail


def storage_pid(key, numel):
    """The persistent id of a float storage in a zip archive."""
    return PersistentId(("storage", Global("torch", "FloatStorage"), key, "cpu", numel))


def legacy_pid(key, numel):
    """The persistent id of a float storage in a legacy stream (no view)."""
    return PersistentId(("storage", Global("torch", "FloatStorage"), key, "cpu", numel, None))


def tensor(pid, shape, stride):
    args = (pid, 0, shape, stride, False, Call(Global("collections", "OrderedDict"), ()))
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)


def storage_bytes(values):
    """torch.storage._load_from_bytes' argument: a legacy torch.save of one float storage."""
    tail = struct.pack("<q", values.size) + values.astype("<f4").tobytes()
    return legacy(pickle_bytes(legacy_pid("0", values.size)), keys=["0"], tail=tail)


def network_pickle(storage):
    """A plain pickle shaped like NVIDIA's, with one tensor whose storage is `storage`."""
    load = Call(Global("torch.storage", "_load_from_bytes"), (storage,))
    return pickle_bytes({"G_ema": tensor(load, (1,), (1,))}, protocol=3)


def call(module, name, *args):
    return Call(Global(module, name), args)


@pytest.fixture(scope="module")
def bomb():
    """(deflated data, crc, size) of 2 GiB - 1 MiB of zeros: a 2 MB zip bomb, made of one
    flushed deflate block repeated (a zip member may hold several)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, zeros, crc = 2047, bytes(1 << 20), 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    return block * blocks + compressor.flush(), crc, blocks << 20


# --- The corpus of hostile pickles, each put in the three containers a pickle can come in.

REFUSED = r"holds the global '{}', which is refused"


def hostile_globals(marker, victim):
    command = COMMAND.format(marker=marker)
    return {
        "os.system": call("os", "system", command),
        "posix.system": call("posix", "system", command),
        "subprocess.Popen": call("subprocess", "Popen", ["touch", str(marker)]),
        "subprocess.check_output": call("subprocess", "check_output", ["touch", str(marker)]),
        "builtins.eval": call("builtins", "eval", f"__import__('os').system('{command}')"),
        "builtins.exec": call("builtins", "exec", f"open('{marker}', 'w').close()"),
        "builtins.getattr": call("builtins", "getattr", call("builtins", "__import__", "os"), "x"),
        "builtins.__import__": call("builtins", "__import__", "os"),
        "builtins.open": call("builtins", "open", str(marker), "w"),
        "builtins.compile": call("builtins", "compile", "1", "<x>", "eval"),
        "__builtin__.eval": call("__builtin__", "eval", "1"),  # protocol 2's Python 2 spelling
        "importlib.import_module": call("importlib", "import_module", "os"),
        "pickle.loads": call(
            "pickle", "loads", pickle_bytes(call("os", "system", command), protocol=3)
        ),
        "numpy.load": call("numpy", "load", str(marker)),
        "torch.load": call("torch", "load", str(marker)),
        "shutil.rmtree": call("shutil", "rmtree", str(victim)),
    }


GLOBAL_NAMES = list(hostile_globals("m", "v"))


def opcode_tricks(marker):
    """Raw opcode sequences: (pickle bytes, expected message)."""
    command = COMMAND.format(marker=marker).encode()
    text = b"X" + struct.pack("<I", len(command)) + command
    ordered_dict = b"ccollections\nOrderedDict\n"
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n"
    return {
        # protocol 4 names globals from the stack, still through find_class
        "STACK_GLOBAL": (
            b"\x80\x04\x8c\x02os\x8c\x06system\x93" + text + b"\x85R.",
            REFUSED.format(r"os\.system"),
        ),
        # INST and OBJ, the protocol 0/1 ways to instantiate a class
        "INST": (b"\x80\x02(" + text + b"ios\nsystem\n.", REFUSED.format(r"os\.system")),
        "OBJ": (b"\x80\x02(cos\nsystem\n" + text + b"o.", REFUSED.format(r"os\.system")),
        "NEWOBJ_EX": (
            b"\x80\x04csubprocess\nPopen\n(" + text + b"t}\x92.",
            REFUSED.format(r"subprocess\.Popen"),
        ),
        # REDUCE on the result of an allowed call: an OrderedDict is no function
        "REDUCE on a result": (
            b"\x80\x02" + ordered_dict + b")R" + text + b"\x85R.",
            r"corrupt: TypeError: 'collections.OrderedDict' object is not callable",
        ),
        # BUILD on a stand-in function, to swap the function it calls
        "BUILD on a stand-in": (
            b"\x80\x02" + rebuild + b"(cbuiltins\nset\n)}Ntb.",
            r"corrupt: a BUILD opcode aims at the stand-in for torch\._utils\._rebuild_tensor_v2",
        ),
        # BUILD on a shared stand-in, to change the dtype every FloatStorage reads as
        "BUILD on a storage type": (
            b"\x80\x02ctorch\nFloatStorage\nN}X\x05\x00\x00\x00dtypeK\x01s\x86b.",
            r"corrupt: AttributeError",
        ),
        "SETITEM on a storage type": (
            b"\x80\x02ctorch\nFloatStorage\nK\x01K\x02s.",
            r"corrupt: TypeError: 'TorchDtype' object does not support item assignment",
        ),
        "SETITEMS on a class": (
            b"\x80\x02" + ordered_dict + b"(K\x01K\x02u.",
            r"corrupt: TypeError: 'type' object does not support item assignment",
        ),
        # a 9-byte pickle that would make the unpickler allocate a 32 GB memo
        "memo index": (
            b"\x80\x02Nr\xff\xff\xff\x7f.",
            r"corrupt: LONG_BINPUT 2147483647 after 2 opcodes",
        ),
        "memo read": (b"\x80\x02h\x05.", r"corrupt: BINGET 5 reads an empty memo slot"),
        "BINBYTES8 length": (
            b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc.",
            r"corrupt: a pickle needs 1099511627776 more bytes where \d+ are left",
        ),
        "FRAME length": (
            b"\x80\x04\x95" + struct.pack("<Q", 1 << 33) + b"N.",
            r"corrupt: a pickle needs 8589934592 more bytes",
        ),
        "BINUNICODE8 length": (
            b"\x80\x04\x8d" + struct.pack("<Q", 1 << 33) + b"abc.",
            r"corrupt: a pickle needs 8589934592 more bytes",
        ),
        "unregistered EXT code": (
            b"\x80\x02\x82\x42.",
            r"uses the copyreg extension code 66 \(EXT1\), which is refused",
        ),
        # a tuple nested a million deep, then hashed as a dict key: a C stack overflow
        "nested dict key": (
            b"\x80\x02}N" + b"\x85" * 1_000_000 + b"Ns.",
            r"nests containers more than 100 levels deep",
        ),
        "nested lists": (b"\x80\x02" + b"]" * 5_000 + b"a" * 4_999 + b".", r"levels deep"),
        # lists nested after the fact (each appended to its parent while still empty)
        "lists filled late": (
            b"\x80\x02"
            + b"".join(b"]r" + struct.pack("<I", i) for i in range(300))
            + b"".join(
                b"j" + struct.pack("<I", i) + b"j" + struct.pack("<I", i + 1) + b"a0"
                for i in range(299)
            )
            + b"j\x00\x00\x00\x00.",
            r"nests containers more than 100 levels deep",
        ),
        # "billion laughs": each level refers twice to the one below, 2**60 entries in all,
        # as a dict key (hashed recursively in C), then as lists shared before being filled
        "shared tuples": (
            b"\x80\x02}N" + b"2\x86" * 60 + b"Ns.",
            r"a walk over it visits more than 10000000 entries",
        ),
        "lists shared, then filled": (
            b"\x80\x02"
            + b"".join(b"]r" + struct.pack("<I", i) for i in range(61))
            + b"".join(
                (b"j" + struct.pack("<I", i) + b"j" + struct.pack("<I", i + 1) + b"a") * 2 + b"0"
                for i in range(60)
            )
            + b"j\x00\x00\x00\x00.",
            r"a walk over it visits more than 10000000 entries",
        ),
        # numpy's _reconstruct(ndarray, (0,), b'b'), then BUILD with a state whose shape needs
        # 4 TB and whose data has 4 bytes (two pickles spliced: the writer has no BUILD node)
        "numpy array shape": (
            pickle_bytes(
                Call(
                    Global("numpy.core.multiarray", "_reconstruct"),
                    (Global("numpy", "ndarray"), (0,), b"b"),
                ),
                protocol=3,
            )[:-1]
            + pickle_bytes(
                (1, (1 << 20, 1 << 20), Call(Global("numpy", "dtype"), ("f4",)), False, b"1234"),
                protocol=3,
            )[2:-1]
            + b"b.",
            r"a numpy array of shape \(1048576, 1048576\) has 4 bytes",
        ),
    }


TRICKS = list(opcode_tricks("m"))


@pytest.fixture
def sentinel(tmp_path):
    """(marker that an attack would create, directory an attack would delete)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    yield tmp_path / "pwned", victim
    assert not (tmp_path / "pwned").exists()
    assert victim.is_dir()


def containers(tmp_path, payload):
    """The payload pickle as a zip data.pkl, a legacy main pickle and a plain pickle file."""
    paths = {
        "zip": tmp_path / "evil.pth",
        "legacy": tmp_path / "evil_legacy.pth",
        "plain": tmp_path / "evil.pkl",
    }
    paths["zip"].write_bytes(torch_zip(payload))
    paths["legacy"].write_bytes(legacy(payload))
    paths["plain"].write_bytes(payload)
    return paths


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_hostile_globals(tmp_path, sentinel, name):
    payload = pickle_bytes({"generator": hostile_globals(*sentinel)[name]}, protocol=3)
    message = REFUSED.format(name.replace(".", r"\."))
    for kind, path in containers(tmp_path, payload).items():
        read = read_pickle_file if kind == "plain" else read_torch_file
        refused(read, path, message)
        refused(jgan.load, path, message)


@pytest.mark.parametrize("name", TRICKS)
def test_opcode_tricks(tmp_path, sentinel, name):
    payload, message = opcode_tricks(sentinel[0])[name]
    for kind, path in containers(tmp_path, payload).items():
        refused(read_pickle_file if kind == "plain" else read_torch_file, path, message)
    assert torch_pickle.TORCH_GLOBALS["torch", "FloatStorage"].dtype == np.float32


def test_extension_codes_never_reach_a_cached_global(tmp_path, sentinel):
    """copyreg's extension cache is process-wide: once any unpickler has resolved a code, the
    C unpickler hands the cached object out without calling find_class."""
    code = 0x6A67
    copyreg.add_extension("os", "system", code)
    try:
        assert pickle.loads(b"\x80\x02\x83\x67\x6a.") is os.system  # warms the cache
        command = COMMAND.format(marker=sentinel[0]).encode()
        payload = b"\x80\x02\x83\x67\x6aX" + struct.pack("<I", len(command)) + command + b"\x85R."
        for kind, path in containers(tmp_path, payload).items():
            read = read_pickle_file if kind == "plain" else read_torch_file
            refused(read, path, r"uses the copyreg extension code 27239 \(EXT2\)")
    finally:
        copyreg.remove_extension("os", "system", code)


# --- Storages nested in NVIDIA-style pickles (torch.storage._load_from_bytes).


def test_hostile_nested_storages(tmp_path, sentinel, bomb):
    command = COMMAND.format(marker=sentinel[0])
    evil = legacy(pickle_bytes(call("os", "system", command)))
    again = legacy(
        pickle_bytes(
            call("torch.storage", "_load_from_bytes", storage_bytes(np.ones(2))), protocol=3
        )
    )
    huge = pickle_bytes(legacy_pid("0", 10**12))
    cases = {
        "evil.pkl": (evil, REFUSED.format(r"os\.system")),
        # nesting stops after one level: a nested storage cannot nest another
        "recursive.pkl": (again, REFUSED.format(r"torch\.storage\._load_from_bytes")),
        "huge.pkl": (
            legacy(huge, keys=["0"], tail=struct.pack("<q", 10**12)),
            r"nested storage that is truncated or corrupt: the file ends inside storage record",
        ),
        "bomb.pkl": (
            torch_zip(
                pickle_bytes(storage_pid("0", 1 << 28)),
                extra=[Member("archive/data/0", bomb[0], zipfile.ZIP_DEFLATED, bomb[2], bomb[1])],
            ),
            r"has a nested storage that has the compressed record archive/data/0, which is refused",
        ),
        "text.pkl": ("not bytes", r"a nested storage is 'not bytes' instead of bytes"),
    }
    for name, (storage, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(network_pickle(storage))
        refused(read_pickle_file, path, message)
        refused(read_network_pickle, path, message)
        refused(jgan.load, path, message)
    path.write_bytes(network_pickle(storage_bytes(np.arange(3.0))))
    np.testing.assert_array_equal(read_pickle_file(path)["G_ema"], [0.0])  # the harmless control


# --- Zip archives.


def valid_archive(tmp_path):
    """The members of a small real checkpoint written by jgan's torch.save writer."""
    path = write_torch_file(tmp_path / "valid.pth", {"w": np.arange(6, dtype=np.float32)})
    with zipfile.ZipFile(path) as archive:
        return [Member(info.filename, archive.read(info)) for info in archive.infolist()]


def test_member_names_that_escape_are_refused_and_nothing_is_extracted(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-escaped"
    absolute = f"/tmp/jgan-absolute-{os.getpid()}"
    listing = set(os.listdir(tmp_path.parent))
    members = valid_archive(tmp_path)
    for name, message in [
        (f"../{outside.name}", rf"has the member '\.\./{outside.name}', which is refused"),
        (absolute, rf"has the member '{absolute}', which is refused"),
        ("archive/../../x", r"has the member 'archive/\.\./\.\./x', which is refused"),
        ("C:/windows/x", r"has the member 'C:/windows/x', which is refused"),
        ("archive/data/0", r"has several members named \['archive/data/0'\]"),
        ("other/data.pkl", r"has 2 data\.pkl records \(archive/data\.pkl, other/data\.pkl\)"),
    ]:
        path = tmp_path / "escape.pth"
        path.write_bytes(zip_archive([*members, Member(name, b"written?")]))
        refused(read_torch_file, path, message)
        refused(jgan.load, path, message)
    assert set(os.listdir(tmp_path.parent)) == listing
    assert not os.path.exists(absolute) and not outside.exists()
    assert sorted(os.listdir(tmp_path)) == ["escape.pth", "valid.pth"]


def test_compressed_and_encrypted_records_are_refused_without_inflating(tmp_path, bomb):
    """A 2 MB record that inflates to 2 GB (a zip bomb), as data.pkl or as a storage."""
    data, crc, size = bomb
    storage = pickle_bytes({"w": tensor(storage_pid("0", size // 4), (size // 4,), (1,))})
    small = pickle_bytes({"w": tensor(storage_pid("0", 4), (4,), (1,))})
    cases = {
        "storage": (
            torch_zip(
                storage, extra=[Member("archive/data/0", data, zipfile.ZIP_DEFLATED, size, crc)]
            ),
            r"has the compressed record archive/data/0, which is refused",
        ),
        "data.pkl": (
            zip_archive([Member("archive/data.pkl", data, zipfile.ZIP_DEFLATED, size, crc)]),
            r"has the compressed record archive/data\.pkl, which is refused",
        ),
        "encrypted": (
            torch_zip(small, extra=[Member("archive/data/0", bytes(16), flags=1)]),
            r"has the encrypted record archive/data/0, which is refused",
        ),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(data)
        refused(read_torch_file, path, message)


def test_sizes_beyond_the_file_fail_fast(tmp_path):
    small = np.zeros(4, "<f4").tobytes()
    cases = {
        # a storage of 10**12 floats in a 1 KB file
        "numel": (
            {"w": tensor(storage_pid("0", 10**12), (10**12,), (1,))},
            r"the storage record archive/data/0 has 16 bytes, its storage 4000000000000",
        ),
        # a tensor that repeats one float 10**12 times through zero strides
        "stride": (
            {"w": tensor(storage_pid("0", 4), (10**6, 10**6), (0, 0))},
            r"holds a tensor of size \(1000000, 1000000\) that repeats the 16 bytes",
        ),
    }
    for name, (tree, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(torch_zip(pickle_bytes(tree), {"0": small}))
        refused(read_torch_file, path, message)
    main = pickle_bytes({"w": tensor(legacy_pid("0", 10**12), (10**12,), (1,))})
    path = tmp_path / "numel_legacy.pth"
    path.write_bytes(legacy(main, keys=["0"], tail=struct.pack("<q", 10**12) + small))
    refused(read_torch_file, path, r"the file ends inside storage record '0'")


# --- Broken files: truncations, magic numbers, counts.


def test_truncated_files_at_many_cut_points(tmp_path):
    values = {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(3)}
    zipped = write_torch_file(tmp_path / "whole.pth", values)
    stream = legacy(
        pickle_bytes({"w": tensor(legacy_pid("0", 64), (8, 8), (8, 1))}),
        keys=["0"],
        tail=struct.pack("<q", 64) + values["w"].tobytes(),
    )
    plain = network_pickle(storage_bytes(np.arange(5.0)))
    files = {"zip": open(zipped, "rb").read(), "legacy": stream, "plain": plain}
    for kind, data in files.items():
        cuts = sorted(set(np.linspace(0, len(data) - 1, 40, dtype=int)) | {1, 2, len(data) - 1})
        read = read_pickle_file if kind == "plain" else read_torch_file
        for cut in cuts:
            path = tmp_path / f"cut_{kind}_{cut}.pth"
            path.write_bytes(data[:cut])
            refused(read, path, r"is truncated or corrupt|is not a PyTorch checkpoint")


def test_wrong_magic_numbers_and_headers(tmp_path):
    main = pickle_bytes({"w": 1})
    cases = {
        "magic": (legacy(main, magic=LEGACY_MAGIC_NUMBER + 1), r"is not a PyTorch checkpoint"),
        "version": (legacy(main, version=1000), r"legacy protocol version 1000 is not 1001"),
        "empty_zip": (zip_archive([]), r"is not a PyTorch checkpoint"),
        "zip_garbage": (b"PK\x03\x04" + bytes(range(256)) * 4, r"is truncated or corrupt"),
        "text": (b"# this is a README, not weights\n", r"is not a PyTorch checkpoint"),
        "int_pickle": (pickle.dumps(7, protocol=2), r"is not a PyTorch checkpoint"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(data)
        refused(read_torch_file, path, message)
        refused(jgan.load, path, message)


def test_legacy_files_with_mismatched_counts(tmp_path):
    main = pickle_bytes({"w": tensor(legacy_pid("7", 4), (4,), (1,))})
    four = np.ones(4, "<f4").tobytes()
    cases = {
        "count": (
            (["7"], struct.pack("<q", 5) + four),
            r"storage record '7' has 5 elements, not 4",
        ),
        "stranger": (
            (["8"], struct.pack("<q", 4) + four),
            r"the storage record '8' belongs to no tensor",
        ),
        "missing": (([], b""), r"the storage record '7' is missing"),
        "keys": ((pickle_bytes({"7": 4}), b""), r"the list of storage keys is missing"),
    }
    for name, ((keys, tail), message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(legacy(main, keys=keys, tail=tail))
        refused(read_torch_file, path, message)

#!/usr/bin/env python3
"""Writes the committed fixtures of the io tests to tests/data/io/.

Run with Debian's Python, which has PyTorch 1.13 and numpy (the pyenv python3 on PATH has
neither):

    /usr/bin/python3 tests/python/make_io_fixtures.py [--out tests/data/io]

The output is deterministic (the same bytes on every run with the same torch and numpy). The C++
tests (tests/unit/test_io_*.cpp) do not store expected values: every tensor follows `pattern`
(fixture_pattern.py, shared with check_state_dict.py), which they recompute; keep them in sync.

pattern(shape, index, dtype), with j the row-major element number and index the entry's
position in its state dict:
    floating: (j % 17) * 0.25 - index        (exact in float16 and bfloat16)
    bool:     j % 3 == 0
    integer:  j % 100 + index

Fixtures (.pth = torch.save zip archive unless said otherwise):
    tiny_float32.pth      Tiny().state_dict(): conv (no bias), BatchNorm2d (int64 0-dim
                          num_batches_tracked), Linear; an OrderedDict with _metadata
    tiny_float16.pth      the same after .half() (num_batches_tracked stays int64)
    dtypes.pth            bfloat16, float64, int32, int16, int8, uint8, bool, a 0-dim float32, an
                          empty [0, 3] float32
    views.pth             one storage (arange(24) as [4, 6]) behind five entries: the whole, the
                          same tensor again, its transpose, a row (offset 12), a strided slice
    checkpoint.pth        {'epoch': 3, 'state_dict_backbone': Tiny state dict, 'lr': 0.1,
                          'arch': 'tiny', 'history': [1.5, None, True],
                          'state_dict_softmax_fc': {'weight': [3, 4]}}  (a plain dict)
    ddp.pth               the Tiny state dict with every key prefixed by 'module.'
    legacy.pth            {'weight': [2, 3]} with _use_new_zipfile_serialization=False
    forbidden_global.pth  a hand-made zip whose data.pkl is `os.system('true')`; written as bytes
                          here, never unpickled by anything
    big_endian.pth        tiny_float32's records plus a byteorder record 'big'
    bin_protocol{2,3,4,5}.pkl   pickle.dumps((bins, issame), protocol=N), insightface's .bin
                          layout: bins = [b'\\xff\\xd8jpeg', b'', bytes(range(256)), b'\\x00'*3],
                          issame = [True, False]; protocol 5 makes bins[3] a bytearray
                          (BYTEARRAY8)
    numpy_uint8_p2.pkl, numpy_uint8_p5.pkl   numpy.arange(6, dtype=uint8).reshape(2, 3)
"""

import argparse
import collections
import io
import os
import pickle
import pickletools
import sys
import zipfile

import numpy
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_pattern import pattern  # noqa: E402


class Tiny(torch.nn.Module):
    """The C++ tests build the same module (tests/unit/test_io_state_dict.cpp, TinyImpl)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)


def tiny_state_dict():
    model = Tiny()
    sd = model.state_dict()
    with torch.no_grad():
        for index, (name, tensor) in enumerate(sd.items()):
            tensor.copy_(pattern(tuple(tensor.shape), index, tensor.dtype))
    return model.state_dict()


def legacy_bytes(state_dict):
    """torch.save(..., _use_new_zipfile_serialization=False) of a one-storage state dict, with
    the storage key (a memory address, different on every run) renamed to a same-length number,
    so the file is deterministic and still loads. (With several storages their order would
    follow the addresses too.)"""
    buf = io.BytesIO()
    torch.save(state_dict, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, sys_info
        pickle.load(stream)
    for opcode, arg, pos in pickletools.genops(stream):  # the object itself: skip it
        if opcode.name == "STOP":
            break
    keys = pickle.load(stream)
    assert len(keys) == 1
    data = data.replace(keys[0].encode(), b"0" * len(keys[0]))
    loaded = torch.load(io.BytesIO(data))
    assert list(loaded) == list(state_dict) and all(torch.equal(loaded[k], state_dict[k]) for k in loaded)
    return data


def zip_bytes(records):
    """A zip like torch.save's (every record under 'archive/', stored, fixed timestamps)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            info = zipfile.ZipInfo("archive/" + name, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)
    return out.getvalue()


def zip_records(path):
    with zipfile.ZipFile(path) as z:
        return [(info.filename.split("/", 1)[1], z.read(info.filename)) for info in z.infolist()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "data", "io"))
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)

    def path(name):
        return os.path.join(out, name)

    tiny = tiny_state_dict()
    torch.save(tiny, path("tiny_float32.pth"))

    half = Tiny()
    half.load_state_dict(tiny)
    torch.save(half.half().state_dict(), path("tiny_float16.pth"))

    specs = [("bf16", (2, 3), torch.bfloat16), ("f64", (5,), torch.float64), ("i32", (2, 2), torch.int32),
             ("i16", (3,), torch.int16), ("i8", (3,), torch.int8), ("u8", (4,), torch.uint8),
             ("b", (5,), torch.bool), ("f32_scalar", (), torch.float32), ("empty", (0, 3), torch.float32)]
    torch.save(collections.OrderedDict((name, pattern(shape, i, dtype)) for i, (name, shape, dtype) in enumerate(specs)),
               path("dtypes.pth"))

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = collections.OrderedDict([("base", base), ("alias", base), ("transposed", base.t()), ("row", base[2]),
                                     ("strided", base[1:3, ::2])])
    torch.save(views, path("views.pth"))

    fc = collections.OrderedDict([("weight", pattern((3, 4), 0, torch.float32))])
    checkpoint = {"epoch": 3, "state_dict_backbone": tiny, "lr": 0.1, "arch": "tiny", "history": [1.5, None, True],
                  "state_dict_softmax_fc": fc}
    torch.save(checkpoint, path("checkpoint.pth"))

    torch.save(collections.OrderedDict(("module." + k, v) for k, v in tiny.items()), path("ddp.pth"))
    with open(path("legacy.pth"), "wb") as f:
        f.write(legacy_bytes(collections.OrderedDict([("weight", pattern((2, 3), 0, torch.float32))])))

    # os.system('true'), spelled out opcode by opcode; nothing here unpickles it.
    evil = (b"\x80\x02"                 # PROTO 2
            b"cos\nsystem\n"            # GLOBAL 'os system'
            b"q\x00"                    # BINPUT 0
            b"X\x04\x00\x00\x00true"    # BINUNICODE 'true'
            b"\x85"                     # TUPLE1
            b"R"                        # REDUCE
            b".")                       # STOP
    with open(path("forbidden_global.pth"), "wb") as f:
        f.write(zip_bytes([("data.pkl", evil), ("version", b"3\n")]))

    records = [r for r in zip_records(path("tiny_float32.pth")) if r[0] != "byteorder"]
    with open(path("big_endian.pth"), "wb") as f:
        f.write(zip_bytes(records[:1] + [("byteorder", b"big")] + records[1:]))

    bins = [b"\xff\xd8jpeg", b"", bytes(range(256)), b"\x00" * 3]
    for protocol in (2, 3, 4, 5):
        items = list(bins)
        if protocol == 5:
            items[3] = bytearray(items[3])
        with open(path("bin_protocol%d.pkl" % protocol), "wb") as f:
            f.write(pickle.dumps((items, [True, False]), protocol=protocol))

    array = numpy.arange(6, dtype=numpy.uint8).reshape(2, 3)
    for protocol in (2, 5):
        with open(path("numpy_uint8_p%d.pkl" % protocol), "wb") as f:
            f.write(pickle.dumps(array, protocol=protocol))

    total = sum(os.path.getsize(path(name)) for name in os.listdir(out))
    print("wrote %d files (%d bytes) to %s" % (len(os.listdir(out)), total, out))


if __name__ == "__main__":
    main()

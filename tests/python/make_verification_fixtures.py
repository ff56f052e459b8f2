#!/usr/bin/env python3
"""Writes the committed verification `.bin` fixtures of tests/unit/test_verification_bin.cpp and
tests/integration/cli_data_pack_test.sh to tests/data/verification/.

Run with Debian's Python (numpy 1.24 and OpenCV; the pyenv python3 on PATH has neither):

    /usr/bin/python3 tests/python/make_verification_fixtures.py [--out tests/data/verification]

Every fixture is a pickle of `(bins, issame_list)` in one of the variants of
../shared/docs/formats.md section 3. All but py2_protocol2_large.bin hold the same 3 pairs of
6 images (images 2i and 2i + 1 form pair i):
    0, 1, 2: JPEG 112x112;  3: the same object as image 1 (so a memo get appears);
    4: PNG 112x112;  5: JPEG 96x112 (width x height)
    issame = [True, False, True]
The image bytes are in images/<index>.<ext> (images/3 is not written: it is images/1), listed
with their sha256 in expected.txt, which the C++ tests read.

Fixtures:
    py2_protocol2.bin     what CPython 2.7's cPickle writes for pickle.dump((bins, issame_list), f, 2)
                          with str elements, emitted opcode by opcode (no Python 2 here): PROTO 2,
                          EMPTY_LIST BINPUT, MARK ... APPENDS in batches of 1000 (a batch of one is
                          a lone APPEND), SHORT_BINSTRING / BINSTRING, a memo put after each
                          object (cPickle numbers the memo from 1), BINGET for a repeated object,
                          NEWTRUE / NEWFALSE, TUPLE2, BINPUT, STOP
    py2_protocol2_large.bin  the same emitter on 1001 pairs: images[i] = b"%03d" % (i % 300) (300
                          distinct objects, then memo gets), issame[i] = i % 3 == 0; exercises
                          LONG_BINPUT, LONG_BINGET, APPENDS batches of 1000 and a lone APPEND
    py3_protocol{2,3,4,5}.bin   pickle.dumps((bins, issame), protocol=N): bytes elements
                          (protocol 2 spells them _codecs.encode(text, 'latin1'))
    numpy_protocol2.bin   elements are numpy uint8 arrays of shape (n, 1), as cv2.imencode
                          returns them (numpy.core.multiarray._reconstruct + BUILD, rawdata as
                          _codecs.encode); issame a list of bools
    numpy_protocol4.bin   1-D uint8 arrays (rawdata as bytes); issame a 1-D numpy bool array
    numpy_protocol5.bin   1-D uint8 arrays via numpy.core.numeric._frombuffer(BYTEARRAY8, ...);
                          issame a list of numpy.bool_ scalars (numpy.core.multiarray.scalar)
    numpy2_protocol4.bin  numpy_protocol4's images as numpy 2 names them (numpy._core.multiarray):
                          pickled through stand-in modules registered under numpy 2's names, so
                          the framing stays right; issame a list of bools
    bad_float32.bin       the pair structure with numpy float32 arrays as images (refused)
    bad_rawdata_length.bin  a uint8 array whose shape says 10 bytes but whose rawdata holds 3
    bad_global.bin        (bins, issame) whose first image is os.system('true') (refused, never run)

The output is deterministic for a given OpenCV (its libjpeg / libpng). Each file is checked with
pickletools.dis and with pickle.loads (encoding='bytes' for the Python 2 file) before it is written.
"""

import argparse
import hashlib
import io
import os
import pickle
import pickletools
import struct
import sys
import types

import cv2
import numpy

ISSAME = [True, False, True]


def make_images():
    """Six small synthetic 'faces': a gradient background and an ellipse, per-image colours."""
    def face(seed, width, height):
        y, x = numpy.mgrid[0:height, 0:width]
        img = numpy.zeros((height, width, 3), numpy.uint8)
        img[..., 0] = (x * 2 + seed * 40) % 256
        img[..., 1] = (y * 2 + seed * 70) % 256
        img[..., 2] = 90 + seed * 20
        cv2.ellipse(img, (width // 2, height // 2), (width // 4, height // 3), 0, 0, 360,
                    (30 + seed * 30, 160, 200 - seed * 25), -1)
        return img

    def jpeg(img):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 10])
        assert ok
        return buf  # shape (n, 1) uint8, as insightface's packers got it

    def png(img):
        ok, buf = cv2.imencode(".png", img[::8, ::8].repeat(8, 0).repeat(8, 1), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok
        return buf

    arrays = [jpeg(face(0, 112, 112)), jpeg(face(1, 112, 112)), jpeg(face(2, 112, 112)), None,
              png(face(3, 112, 112)), jpeg(face(4, 96, 112))]
    arrays[3] = arrays[1]  # the same object: pickles write a memo get for it
    return arrays


def as_bytes_list(arrays):
    """bytes objects with the same sharing as `arrays` (images 1 and 3 one object)."""
    made = {}
    out = []
    for a in arrays:
        if id(a) not in made:
            made[id(a)] = a.tobytes()
        out.append(made[id(a)])
    return out


class Py2Pickler:
    """Emits protocol 2 the way CPython 2.7's cPickle does for str, bool, list and tuple."""

    BATCHSIZE = 1000

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo = {}  # id(obj) -> memo index
        self.keep = []  # keeps memoized objects alive, so their ids stay unique

    def put(self, obj):
        index = len(self.memo) + 1  # cPickle's put2 numbers from 1 (pickle.py from 0)
        self.memo[id(obj)] = index
        self.keep.append(obj)
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

    def get(self, index):
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)

    def save(self, obj):
        if obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"  # NEWTRUE / NEWFALSE, never memoized
            return
        if id(obj) in self.memo:
            self.get(self.memo[id(obj)])
            return
        if isinstance(obj, bytes):  # a Python 2 str
            if len(obj) < 256:
                self.out += b"U" + bytes([len(obj)]) + obj  # SHORT_BINSTRING
            else:
                self.out += b"T" + struct.pack("<i", len(obj)) + obj  # BINSTRING
            if len(obj) >= 2:  # cPickle neither memoizes nor looks up strings shorter than 2
                self.put(obj)
        elif isinstance(obj, list):
            self.out += b"]"  # EMPTY_LIST
            self.put(obj)
            items = list(obj)
            for start in range(0, len(items), self.BATCHSIZE):
                batch = items[start:start + self.BATCHSIZE]
                if len(batch) == 1:
                    self.save(batch[0])
                    self.out += b"a"  # APPEND
                else:
                    self.out += b"("  # MARK
                    for item in batch:
                        self.save(item)
                    self.out += b"e"  # APPENDS
        elif isinstance(obj, tuple) and len(obj) == 2:
            for item in obj:
                self.save(item)
            self.out += b"\x86"  # TUPLE2
            self.put(obj)
        else:
            raise TypeError(type(obj))

    def dumps(self, obj):
        self.save(obj)
        self.out += b"."  # STOP
        return bytes(self.out)


def check_pickle(name, data, expect_images, expect_issame, encoding="ASCII"):
    """pickletools parses it; pickle.loads gives the expected images (bytes) and issame."""
    text = io.StringIO()
    pickletools.dis(data, out=text)
    value = pickle.loads(data, encoding=encoding)
    assert isinstance(value, tuple) and len(value) == 2, name
    images = [x.tobytes() if isinstance(x, numpy.ndarray) else bytes(x) for x in value[0]]
    assert images == expect_images, name
    issame = [bool(x) for x in value[1]]
    assert issame == expect_issame, name
    return text.getvalue()


class StandIn:
    """Registers modules under numpy 2's names (numpy._core.*) holding stand-ins for the
    functions numpy 1.24 pickles, so a pickler writes numpy 2's global names."""

    def __init__(self):
        self.functions = {}
        for module, name in [("numpy._core.multiarray", "_reconstruct"), ("numpy._core.numeric", "_frombuffer")]:
            def stand_in(*args):
                raise RuntimeError("a fixture stand-in is never called")
            stand_in.__module__ = module
            stand_in.__name__ = stand_in.__qualname__ = name
            for parent in ("numpy._core", module):
                sys.modules.setdefault(parent, types.ModuleType(parent))
            setattr(sys.modules[module], name, stand_in)
            self.functions[name] = stand_in

    def dumps(self, obj, protocol):
        functions = self.functions

        class Pickler(pickle.Pickler):
            def reducer_override(self, o):
                if type(o) is numpy.ndarray:
                    reduced = o.__reduce_ex__(protocol)
                    return (functions[reduced[0].__name__],) + tuple(reduced[1:])
                return NotImplemented

        buf = io.BytesIO()
        Pickler(buf, protocol=protocol).dump(obj)
        return buf.getvalue()


class Forged:
    """Pickles as an arbitrary reduce tuple (for the refused fixtures); never unpickled here."""

    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "data", "verification"))
    out = parser.parse_args().out
    os.makedirs(os.path.join(out, "images"), exist_ok=True)

    arrays = make_images()
    bins = as_bytes_list(arrays)
    files = {}  # name -> (bytes, variant the reader reports)

    # Python 2 (cPickle), protocol 2.
    data = Py2Pickler().dumps((bins, list(ISSAME)))
    listing = check_pickle("py2_protocol2", data, bins, ISSAME, encoding="bytes")
    assert "BINGET" in listing and "BINSTRING" in listing and "TUPLE2" in listing
    files["py2_protocol2.bin"] = (data, "python2 protocol 2 (str elements)")

    distinct = [b"%03d" % i for i in range(300)]
    large_bins = [distinct[i % 300] for i in range(2002)]
    large_issame = [i % 3 == 0 for i in range(1001)]
    data = Py2Pickler().dumps((large_bins, large_issame))
    listing = check_pickle("py2_protocol2_large", data, large_bins, large_issame, encoding="bytes")
    for op in ("SHORT_BINSTRING", "LONG_BINPUT", "LONG_BINGET", "BINGET", "APPENDS", "a    APPEND\n"):
        assert op in listing, op
    files["py2_protocol2_large.bin"] = (data, "python2 protocol 2 (str elements)")

    # Python 3, plain bytes.
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps((bins, list(ISSAME)), protocol=protocol)
        listing = check_pickle("py3_protocol%d" % protocol, data, bins, ISSAME)
        assert ("_codecs" in listing) == (protocol == 2)
        variant = ("python3 protocol 2 (_codecs.encode elements)" if protocol == 2
                   else "protocol %d (bytes elements)" % protocol)
        files["py3_protocol%d.bin" % protocol] = (data, variant)

    # numpy arrays.
    column = arrays  # (n, 1) arrays straight from cv2.imencode, images 1 and 3 one object
    data = pickle.dumps((column, list(ISSAME)), protocol=2)
    listing = check_pickle("numpy_protocol2", data, bins, ISSAME)
    assert "numpy.core.multiarray _reconstruct" in listing and "BUILD" in listing and "_codecs" in listing
    files["numpy_protocol2.bin"] = (data, "python3 protocol 2 (numpy uint8 arrays, numpy.core)")

    flat = [a.reshape(-1) for a in arrays]
    flat[3] = flat[1]
    data = pickle.dumps((flat, numpy.array(ISSAME)), protocol=4)
    listing = check_pickle("numpy_protocol4", data, bins, ISSAME)
    assert "'numpy.core.multiarray'" in listing and "'b1'" in listing
    files["numpy_protocol4.bin"] = (data, "protocol 4 (numpy uint8 arrays, numpy.core)")

    data = pickle.dumps((flat, [numpy.bool_(x) for x in ISSAME]), protocol=5)
    listing = check_pickle("numpy_protocol5", data, bins, ISSAME)
    # numpy 1.24 writes a contiguous array at protocol 5 as _frombuffer(BYTEARRAY8 buffer, ...).
    assert "'numpy.core.numeric'" in listing and "'_frombuffer'" in listing and "BYTEARRAY8" in listing
    assert "'scalar'" in listing
    files["numpy_protocol5.bin"] = (data, "protocol 5 (numpy uint8 arrays via _frombuffer, numpy.core)")

    stand_in = StandIn()
    data = stand_in.dumps((flat, list(ISSAME)), protocol=4)
    listing = io.StringIO()
    pickletools.dis(data, out=listing)
    listing = listing.getvalue()
    assert "'numpy._core.multiarray'" in listing and "numpy.core" not in listing
    # Loads with numpy 1.24 when numpy._core.* is mapped to numpy.core.* (which numpy 2 provides).
    real = _load_renamed(data)
    assert [x.tobytes() for x in real[0]] == bins and list(real[1]) == ISSAME
    files["numpy2_protocol4.bin"] = (data, "protocol 4 (numpy uint8 arrays, numpy._core)")

    # Refused files.
    f32 = [numpy.arange(4, dtype=numpy.float32) for _ in range(2)]
    data = pickle.dumps((f32, [True]), protocol=4)
    check_pickle_structure("bad_float32", data)
    files["bad_float32.bin"] = (data, "")

    reconstruct = numpy.core.multiarray._reconstruct
    u1 = numpy.dtype("u1")
    short = Forged((reconstruct, (numpy.ndarray, (0,), b"b"), (1, (10,), u1, False, b"abc")))
    data = pickle.dumps(([short, bins[0]], [True]), protocol=4)
    check_pickle_structure("bad_rawdata_length", data)
    files["bad_rawdata_length.bin"] = (data, "")

    evil = Forged((os.system, ("true",)))
    data = pickle.dumps(([evil, bins[0]], [True]), protocol=4)
    check_pickle_structure("bad_global", data)
    assert b"system" in data
    files["bad_global.bin"] = (data, "")

    for name, (data, _) in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    manifest = ["# Written by tests/python/make_verification_fixtures.py (see its docstring); tab-separated.",
                "# image <index> <file under images/> <sha256>: the 6 images of every fixture but *_large.bin",
                "# issame <flags>: their pairs, 1 = genuine",
                "# variant <file> <what read_verification_bin reports as VerificationBin::variant>"]
    for index, image in enumerate(bins):
        arr = arrays[index]
        ext = "png" if image.startswith(b"\x89PNG") else "jpg"
        first = next(i for i, a in enumerate(arrays) if a is arr)
        file_name = "%d.%s" % (first, ext)
        if first == index:
            with open(os.path.join(out, "images", file_name), "wb") as f:
                f.write(image)
        manifest.append("image\t%d\t%s\t%s" % (index, file_name, hashlib.sha256(image).hexdigest()))
    manifest.append("issame\t" + "\t".join("1" if x else "0" for x in ISSAME))
    for name, (_, variant) in sorted(files.items()):
        if variant:
            manifest.append("variant\t%s\t%s" % (name, variant))
    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")

    total = 0
    for root, _, names in os.walk(out):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
    print("wrote %d fixtures (%d bytes in all) to %s" % (len(files), total, out))


def _load_renamed(data):
    """Unpickles numpy 2 names with numpy 1.24 (numpy._core.* -> numpy.core.*)."""
    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return super().find_class(module.replace("numpy._core", "numpy.core"), name)

    return Unpickler(io.BytesIO(data)).load()


def check_pickle_structure(name, data):
    """pickletools parses a file that must not be unpickled."""
    pickletools.dis(data, out=io.StringIO())
    assert data.endswith(b"."), name


if __name__ == "__main__":
    main()

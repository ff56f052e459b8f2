#!/usr/bin/env python3
"""Writes the committed RecordIO fixtures of tests/unit/test_recordio.cpp to tests/data/recordio/.

    /usr/bin/python3 tests/python/make_recordio_fixtures.py [--out tests/data/recordio]

No mxnet: this is an independent re-implementation, with struct.pack, of what
mxnet.recordio.MXIndexedRecordIO(idx, rec, 'w').write_idx(key, mxnet.recordio.pack(header, img))
writes, following
  - dmlc-core src/recordio.cc, RecordIOWriter::WriteRecord: chunk = magic 0xced7230a (uint32 LE),
    lrec = cflag << 29 | length, data; a payload is split at every 4-aligned offset (offsets
    0, 4, ..., below len rounded down to 4) where the 4 magic bytes occur, those 4 bytes are
    dropped, the pieces are written with cflag 1 (first), 2 (middle), 3 (last), 0 (unsplit); zero
    padding to a multiple of 4 after the last piece;
  - mxnet python/mxnet/recordio.py: pack() = struct.pack('IfQQ', flag, label, id, id2)
    (24 bytes, no padding) + float32 labels + image; a scalar label forces flag 0, an array label
    sets flag = len(labels) and label = 0; write_idx writes '%s\\t%d\\n' % (key, tell()) in write
    order.
Deterministic: the same bytes on every run (random.Random with fixed seeds).

Fixtures, each NAME.rec + NAME.idx + NAME.txt (the manifest the C++ tests check against):
    ms1m     insightface layout, 3 classes of 2, 3 and 1 images: images under keys 1..6 with
             label arrays [class, 1.0] (flag 2), then the meta record key 0 (labels [7, 10], no
             image) stored AFTER the images, then identity records 7, 8, 9 with labels [1, 3],
             [3, 6], [6, 7] and no image (face2rec2's order). Image lengths cover every padding.
    flat     im2rec style, scalar labels (flag 0), keys written in the order 5 2 9 0 7 3 11, one
             empty image, ids and id2 using all 64 bits.
    split    payloads holding the magic at 4-aligned offsets, so they are split into
             first/middle/last chunks: a payload that is only the magic, magic at offset 0, two
             magics in a row (an empty middle chunk), magic at the very end (an empty last
             chunk), magic at an unaligned offset only (not split), magic inside the IRHeader's
             id field, magic inside images; keys written in the order 3 0 4 1 6 2 5 8 7.
Manifest lines (tab-separated; '#' lines are comments):
    key  offset  payload_hex  kind  [flag  label  id  id2  labels  image_hex]
kind is 'raw' (a payload that is not an image record: only the first three columns matter) or
'image' (a packed record, then its header: label printed with %.9g, labels comma-separated or
'-', image_hex or '-' when empty).
"""

import argparse
import os
import random
import struct

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack('<I', MAGIC)


def frame(payload):
    """The chunks dmlc's RecordIOWriter writes for one payload."""
    assert len(payload) < (1 << 29)
    out = bytearray()
    n = len(payload)
    start = 0  # first byte not yet written
    for i in range(0, n - n % 4, 4):
        if payload[i:i + 4] == MAGIC_BYTES:
            cflag = 1 if start == 0 else 2
            out += struct.pack('<II', MAGIC, cflag << 29 | (i - start)) + payload[start:i]
            start = i + 4
    cflag = 3 if start > 0 else 0
    out += struct.pack('<II', MAGIC, cflag << 29 | (n - start)) + payload[start:]
    out += b'\x00' * (-n % 4)
    return bytes(out)


def pack(label, image, id_=0, id2=0):
    """mxnet.recordio.pack(IRHeader(0, label, id_, id2), image)."""
    if isinstance(label, (int, float)):
        return struct.pack('<IfQQ', 0, label, id_, id2) + image
    labels = struct.pack('<%df' % len(label), *label)
    return struct.pack('<IfQQ', len(label), 0.0, id_, id2) + labels + image


def unframe_all(data):
    """Independent reader for the self-check: offset -> payload."""
    out, pos = {}, 0
    while pos < len(data):
        start, parts = pos, []
        while True:
            magic, lrec = struct.unpack_from('<II', data, pos)
            assert magic == MAGIC
            cflag, n = lrec >> 29, lrec & ((1 << 29) - 1)
            parts.append(data[pos + 8:pos + 8 + n])
            pos += 8 + (n + 3) // 4 * 4
            if cflag in (0, 3):
                break
        out[start] = MAGIC_BYTES.join(parts)
    return out


class Fixture:
    def __init__(self, name):
        self.name = name
        self.rec = bytearray()
        self.idx = []
        self.manifest = []
        self.cflags = []

    def add(self, key, payload, header=None):
        offset = len(self.rec)
        self.rec += frame(payload)
        self.idx.append('%d\t%d\n' % (key, offset))
        cols = [str(key), str(offset), payload.hex()]
        if header is None:
            cols.append('raw')
        else:
            flag, label, id_, id2, labels, image = header
            cols += ['image', str(flag), '%.9g' % label, str(id_), str(id2),
                     ','.join('%.9g' % v for v in labels) if labels else '-', image.hex() if image else '-']
        self.manifest.append('\t'.join(cols) + '\n')

    def add_image(self, key, label, image, id_=0, id2=0):
        payload = pack(label, image, id_, id2)
        if isinstance(label, (int, float)):
            header = (0, float(label), id_, id2, [], image)
        else:
            header = (len(label), 0.0, id_, id2, list(label), image)
        self.add(key, payload, header)

    def write(self, out_dir):
        # Self-check with the independent reader: every idx offset gives back its payload.
        payloads = unframe_all(bytes(self.rec))
        for line in self.manifest:
            key, offset, payload_hex = line.split('\t')[:3]
            assert payloads[int(offset)] == bytes.fromhex(payload_hex), (self.name, key)
        with open(os.path.join(out_dir, self.name + '.rec'), 'wb') as f:
            f.write(self.rec)
        with open(os.path.join(out_dir, self.name + '.idx'), 'w', newline='\n') as f:
            f.write(''.join(self.idx))
        with open(os.path.join(out_dir, self.name + '.txt'), 'w', newline='\n') as f:
            f.write('# written by tests/python/make_recordio_fixtures.py; see its docstring\n')
            f.write('# key\toffset\tpayload_hex\tkind\tflag\tlabel\tid\tid2\tlabels\timage_hex\n')
            f.write(''.join(self.manifest))
        print('%s: %d records, %d bytes' % (self.name, len(self.manifest), len(self.rec)))


def fake_jpeg(rng, n):
    """n bytes that look like a JPEG (SOI ... EOI) but are noise; never decoded."""
    if n < 4:
        return bytes(rng.randrange(256) for _ in range(n))
    body = bytes(rng.randrange(256) for _ in range(n - 4))
    return b'\xff\xd8' + body.replace(MAGIC_BYTES, b'\0\0\0\0') + b'\xff\xd9'


def ms1m():
    rng = random.Random(1)
    fx = Fixture('ms1m')
    classes = [2, 3, 1]
    lengths = [13, 16, 1, 2, 3, 40]  # payload = 24 + 8 + length: every padding 0..3 occurs
    key = 1
    ranges = []
    for c, count in enumerate(classes):
        ranges.append((key, key + count))
        for _ in range(count):
            fx.add_image(key, [float(c), 1.0], fake_jpeg(rng, lengths[key - 1]), id_=key)
            key += 1
    n, k = key - 1, len(classes)
    fx.add_image(0, [float(n + 1), float(n + 1 + k)], b'')  # the meta record, after the images
    for c, (first, end) in enumerate(ranges):
        fx.add_image(n + 1 + c, [float(first), float(end)], b'', id_=n + 1 + c)
    return fx


def flat():
    rng = random.Random(2)
    fx = Fixture('flat')
    rows = [  # key, label, image length, id, id2
        (5, 3.0, 21, 5, 0),
        (2, 0.0, 8, 2, 0),
        (9, 1.0, 0, 9, 0),
        (0, 2.0, 17, 0xFFFFFFFFFFFFFFFF, 1),
        (7, 1.0, 30, 7, 0x0123456789ABCDEF),
        (3, 0.5, 5, 3, 0),
        (11, 4.0, 11, 11, 0),
    ]
    for key, label, length, id_, id2 in rows:
        fx.add_image(key, label, fake_jpeg(rng, length), id_=id_, id2=id2)
    return fx


def split():
    rng = random.Random(3)
    fx = Fixture('split')
    m = MAGIC_BYTES

    def noise(n):
        return bytes(rng.randrange(256) for _ in range(n)).replace(m, b'\1\1\1\1')

    fx.add(3, noise(3) + m + noise(5))                       # magic at offset 3: not split
    fx.add(0, m)                                             # only the magic: two empty chunks
    fx.add(4, noise(4) + m + noise(1))                       # split, last chunk of 1 byte
    fx.add(1, m + noise(8) + m + m + noise(3) + m + noise(6))  # offset 0, 12, 16 (empty middle)
    fx.add_image(6, 2.0, noise(8) + m + noise(4) + m, id_=6)   # magic inside the image and at its end
    fx.add(2, noise(12) + m)                                 # magic at the end: empty last chunk
    fx.add_image(5, [1.0, 1.0], noise(7), id_=MAGIC)         # the id field starts with the magic
    fx.add_image(8, 7.0, m + m + m, id_=8)                   # an image of three magics
    fx.add(7, noise(9))                                      # plain, after the split ones
    return fx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument('--out', default=os.path.join(here, '..', 'data', 'recordio'))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for fx in (ms1m(), flat(), split()):
        fx.write(args.out)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""A TensorBoard event-file reader in plain Python (standard library only: neither tensorboard nor
protobuf is installed on the test machines), the independent check of facetrain::EventWriter
(tests/unit/test_tensorboard.cpp runs it).

Reads TFRecord framing (uint64 length, uint32 masked CRC-32C of the 8 length bytes, data, uint32
masked CRC-32C of the data; tensorflow/core/lib/io/record_reader.cc), checks both CRCs of every
record with its own CRC-32C, and decodes each record as a tensorflow.Event
(tensorflow/core/util/event.proto, summary.proto):
  Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
  Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
Fields it does not know are skipped by wire type, as protobuf does.

usage: read_tfevents.py FILE
  prints one JSON document:
    {"records": N, "events": [{"wall_time": float, "step": int, "file_version": str (if present),
                                "values": [{"tag": str, "simple_value": float or "NaN"/"Infinity"/
                                            "-Infinity", "simple_value_bits": uint32}]}]}
  exit status 0; 1 with a message naming the file, record and offset on any corruption
  (CRC mismatch, truncation, malformed protobuf).
"""
import json
import math
import struct
import sys


def make_crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = make_crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Corrupt(Exception):
    pass


def read_varint(buf, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise Corrupt("varint longer than 10 bytes")


def fields(buf):
    """Yields (field number, wire type, value) of a protobuf message: ints for wire types 0, 1
    and 5 (raw little-endian bits), bytes for 2."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise Corrupt("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise Corrupt("truncated fixed%d field %d" % (size * 8, field))
            value = int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            if pos + size > len(buf):
                raise Corrupt("truncated field %d (%d bytes)" % (field, size))
            value = buf[pos:pos + size]
            pos += size
        else:
            raise Corrupt("unsupported wire type %d (field %d)" % (wire, field))
        yield field, wire, value


def expect_wire(field, wire, want, name):
    if wire != want:
        raise Corrupt("%s (field %d) has wire type %d, expected %d" % (name, field, wire, want))


def json_float(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def decode_value(buf):
    value = {"tag": ""}
    for field, wire, v in fields(buf):
        if field == 1:
            expect_wire(field, wire, 2, "Value.tag")
            value["tag"] = v.decode("utf-8")
        elif field == 2:
            expect_wire(field, wire, 5, "Value.simple_value")
            value["simple_value"] = json_float(struct.unpack("<f", struct.pack("<I", v))[0])
            value["simple_value_bits"] = v
    return value


def decode_event(buf):
    event = {"wall_time": 0.0, "step": 0, "values": []}
    for field, wire, v in fields(buf):
        if field == 1:
            expect_wire(field, wire, 1, "Event.wall_time")
            event["wall_time"] = json_float(struct.unpack("<d", struct.pack("<Q", v))[0])
        elif field == 2:
            expect_wire(field, wire, 0, "Event.step")
            event["step"] = v - (1 << 64) if v >= 1 << 63 else v
        elif field == 3:
            expect_wire(field, wire, 2, "Event.file_version")
            event["file_version"] = v.decode("utf-8")
        elif field == 5:
            expect_wire(field, wire, 2, "Event.summary")
            for f, w, value in fields(v):
                if f == 1:
                    expect_wire(f, w, 2, "Summary.value")
                    event["values"].append(decode_value(value))
    return event


def read_records(data):
    """Yields (offset, data) of each record, checking the framing and both CRCs."""
    pos = 0
    index = 0
    while pos < len(data):
        where = "record %d at offset %d" % (index, pos)
        if pos + 12 > len(data):
            raise Corrupt("%s: truncated header (%d bytes left)" % (where, len(data) - pos))
        length_bytes = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (stored,) = struct.unpack("<I", data[pos + 8:pos + 12])
        computed = masked_crc32c(length_bytes)
        if stored != computed:
            raise Corrupt("%s: length CRC mismatch (stored 0x%08x, computed 0x%08x)" % (where, stored, computed))
        if pos + 12 + length + 4 > len(data):
            raise Corrupt("%s: truncated data (length %d, %d bytes left)" % (where, length, len(data) - pos - 12))
        payload = data[pos + 12:pos + 12 + length]
        (stored,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        computed = masked_crc32c(payload)
        if stored != computed:
            raise Corrupt("%s: data CRC mismatch (stored 0x%08x, computed 0x%08x)" % (where, stored, computed))
        yield where, payload
        pos += 16 + length
        index += 1


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: read_tfevents.py FILE\n")
        return 2
    path = argv[1]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.stderr.write("read_tfevents.py: %s\n" % e)
        return 1
    events = []
    try:
        for where, payload in read_records(data):
            try:
                events.append(decode_event(payload))
            except (Corrupt, UnicodeDecodeError) as e:
                raise Corrupt("%s: bad Event: %s" % (where, e))
    except Corrupt as e:
        sys.stderr.write("read_tfevents.py: %s: %s\n" % (path, e))
        return 1
    json.dump({"records": len(events), "events": events}, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""The Python baseline of the loader benchmark: .rec -> normalised float32 [B, 3, 112, 112] batches
with Debian's python3-opencv and numpy, the work arcface_torch's MXFaceDataset + DataLoader do
(decode, RGB, random horizontal flip, ToTensor, Normalize(0.5, 0.5), collate), without mxnet.

    /usr/bin/python3 bench/python_loader_baseline.py train.rec [--workers 1] [--batch 128] [--epochs 3]

Prints one JSON line: {"workers", "images", "seconds", "images_per_s", "images_per_s_per_worker"}.
With --workers N, N processes each make every N-th batch of a shuffled epoch and keep it (no
transfer to a parent process, which a DataLoader would add): a generous upper bound for Python.
The record reading (the .idx, chunked records, the IRHeader) follows formats.md section 1.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import struct
import time

import cv2
import numpy as np

MAGIC = 0xCED7230A


def read_index(idx_path):
    keys, offsets = [], []
    with open(idx_path) as f:
        for line in f:
            if line.strip():
                k, o = line.split('\t')
                keys.append(int(k))
                offsets.append(int(o))
    return dict(zip(keys, offsets)), keys


def read_payload(f, offset):
    """The payload of the record at `offset`, its split chunks joined with the magic re-inserted."""
    f.seek(offset)
    parts = []
    while True:
        magic, lrec = struct.unpack('<II', f.read(8))
        assert magic == MAGIC, 'bad magic at %d' % offset
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        parts.append(f.read(length))
        f.read((4 - length % 4) % 4)
        if cflag in (0, 3):
            break
        parts.append(struct.pack('<I', MAGIC))
    return b''.join(parts)


def unpack(payload):
    flag, label, _, _ = struct.unpack('<IfQQ', payload[:24])
    body = payload[24:]
    if flag > 0:
        label = struct.unpack('<%df' % flag, body[:4 * flag])[0]
        body = body[4 * flag:]
    return label, body


def image_keys(rec_path):
    offsets, keys = read_index(os.path.splitext(rec_path)[0] + '.idx')
    with open(rec_path, 'rb') as f:
        if 0 in offsets:
            flag, label, _, _ = struct.unpack('<IfQQ', read_payload(f, offsets[0])[:24])
            if flag > 0:
                meta = struct.unpack('<2f', read_payload(f, offsets[0])[24:32])
                return offsets, list(range(1, int(meta[0])))
    return offsets, keys


def make_batches(rec_path, keys, offsets, batch, worker, workers, seed):
    rng = random.Random(seed + worker)
    images = 0
    with open(rec_path, 'rb') as f:
        for start in range(worker * batch, len(keys), workers * batch):
            out = np.empty((min(batch, len(keys) - start), 3, 112, 112), dtype=np.float32)
            labels = np.empty(out.shape[0], dtype=np.int64)
            for row, key in enumerate(keys[start:start + out.shape[0]]):
                label, jpeg = unpack(read_payload(f, offsets[key]))
                bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
                rgb = bgr[:, :, ::-1]
                if rng.random() < 0.5:
                    rgb = rgb[:, ::-1]
                chw = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
                out[row] = (chw - np.float32(0.5)) / np.float32(0.5)
                labels[row] = int(label)
            images += out.shape[0]
    return images


def run(args):
    offsets, keys = image_keys(args.rec)
    total, start = 0, time.perf_counter()
    for epoch in range(args.epochs):
        order = list(keys)
        random.Random(epoch).shuffle(order)
        if args.workers == 1:
            total += make_batches(args.rec, order, offsets, args.batch, 0, 1, epoch)
        else:
            with mp.get_context('fork').Pool(args.workers) as pool:
                jobs = [(args.rec, order, offsets, args.batch, w, args.workers, epoch) for w in range(args.workers)]
                total += sum(pool.starmap(make_batches, jobs))
    seconds = time.perf_counter() - start
    print(json.dumps({'workers': args.workers, 'images': total, 'seconds': round(seconds, 3),
                      'images_per_s': round(total / seconds, 1),
                      'images_per_s_per_worker': round(total / seconds / args.workers, 1)}))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('rec')
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--epochs', type=int, default=3)
    run(parser.parse_args())

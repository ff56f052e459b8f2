#!/usr/bin/env python3
"""The Python side of bench/compare_eval.sh's end-to-end row: what insightface's
eval/verification.py does for one .bin with PyTorch (Debian's python3-torch) — load the pickle,
decode every image with OpenCV (RGB, CHW), the mirrored copies, batches of BATCH through the model
in eval mode under no_grad, ((x / 255) - 0.5) / 0.5, float64 embeddings, then normalize + evaluate
(tests/python/verification_reference.py). Prints JSON {"images", "seconds"}.
Usage: python_eval_baseline.py BIN WEIGHTS.pth [MODEL] [BATCH]"""
import json
import os
import pickle
import sys
import time

import cv2
import numpy as np
import torch

here = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(here, '..', 'tests', 'python'))
import insightface_models as models  # noqa: E402
import verification_reference as ref  # noqa: E402


def main():
    path, weights = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 else 'mobilefacenet'
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    net = models.build(model)
    net.load_state_dict(torch.load(weights))
    net.eval()
    t0 = time.perf_counter()
    bins, issame = pickle.load(open(path, 'rb'), encoding='bytes')
    data = torch.empty((2, len(bins), 3, 112, 112), dtype=torch.uint8)
    for i, b in enumerate(bins):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        data[0, i] = chw
        data[1, i] = torch.flip(chw, dims=[2])
    embeddings = []
    with torch.no_grad():
        for flip in range(2):
            out = np.zeros((len(bins), 512))
            for ba in range(0, len(bins), batch):
                img = ((data[flip, ba:ba + batch] / 255) - 0.5) / 0.5
                out[ba:ba + batch] = net(img).numpy()
            embeddings.append(out)
    emb = ref.normalize(embeddings[0] + embeddings[1])
    same = np.asarray(issame, dtype=bool)
    ref.calculate_roc(np.arange(0, 4, 0.01), emb[0::2], emb[1::2], same, nrof_folds=10)
    ref.calculate_val(np.arange(0, 4, 0.001), emb[0::2], emb[1::2], same, 1e-3, nrof_folds=10)
    print(json.dumps({"images": len(bins), "seconds": time.perf_counter() - t0}))


if __name__ == '__main__':
    main()

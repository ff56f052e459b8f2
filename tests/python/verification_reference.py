#!/usr/bin/env python3
"""insightface's verification protocol (recognition/arcface_torch/eval/verification.py), as the
reference facetrain's eval/verification.cpp is tested against.

The functions below are insightface's (calculate_roc, calculate_accuracy, calculate_val,
calculate_val_far, evaluate, and the XNorm / flip-fusion part of test()), copied with only two
substitutions, because Debian 12 has neither scikit-learn nor SciPy <= 1.9.2 (newer SciPy makes
insightface's interp1d(..., kind='slinear') raise on the repeated FAR values):
  * sklearn.model_selection.KFold(n_splits, shuffle=False) -> contiguous folds of sizes
    n // k + (f < n % k), which is what KFold yields;
  * sklearn.preprocessing.normalize -> X / sqrt(einsum('ij,ij->i', X, X)), zero norms -> 1
    (sklearn's row_norms and _handle_zeros_in_scale);
  * scipy.interpolate.interp1d(x, y, kind='slinear')(x0) -> slinear_scipy_1_9() below, a
    transcription of what SciPy 1.9.2 executes for it: make_interp_spline(x, y, k=1) (knots
    [x0, x0, ..., xm-1, xm-1], coefficients y) evaluated by _bspl.evaluate_spline (find_interval,
    then de Boor's recursion).

Usage: verification_reference.py E.npy [E_flip.npy | -] ISSAME.npy OUT.json
Writes every figure facetrain reports, as JSON (floats with repr precision).
"""
import json
import sys

import numpy as np


class LFold:
    def __init__(self, n_splits=2, shuffle=False):
        self.n_splits = n_splits

    def split(self, indices):
        n = len(indices)
        sizes = np.full(self.n_splits, n // self.n_splits, dtype=int)
        sizes[: n % self.n_splits] += 1
        start = 0
        for size in sizes:
            test = indices[start:start + size]
            train = np.concatenate([indices[:start], indices[start + size:]])
            yield train, test
            start += size


def normalize(x):
    norms = np.sqrt(np.einsum('ij,ij->i', x, x))
    norms[norms == 0.0] = 1.0
    x = x.copy()
    x /= norms[:, np.newaxis]
    return x


def slinear_scipy_1_9(x, y, x0):
    ind = np.argsort(x, kind='mergesort')
    x, y = x[ind], y[ind]
    if x0 < x[0] or x0 > x[-1]:
        raise ValueError('A value in x_new is out of the interpolation range.')
    k = 1
    t = np.r_[x[0], x, x[-1]]
    n = t.shape[0] - k - 1
    # find_interval
    l = k
    while x0 < t[l] and l != k:
        l -= 1
    l += 1
    while x0 >= t[l] and l != n:
        l += 1
    interval = l - 1
    # _deBoor_D, nu = 0, k = 1
    h = [1.0, 0.0]
    hh = [0.0]
    hh[0] = h[0]
    h[0] = 0.0
    xb = t[interval + 1]
    xa = t[interval]
    if xb == xa:
        h[1] = 0.0
    else:
        w = hh[0] / (xb - xa)
        h[0] += w * (xb - x0)
        h[1] = w * (x0 - xa)
    out = 0.0
    for a in range(k + 1):
        out = out + y[interval + a - k] * h[a]
    return out


def calculate_accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    acc = float(tp + tn) / dist.size
    return tpr, fpr, acc


def calculate_roc(thresholds, embeddings1, embeddings2, actual_issame, nrof_folds=10):
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    nrof_thresholds = len(thresholds)
    k_fold = LFold(n_splits=nrof_folds, shuffle=False)
    tprs = np.zeros((nrof_folds, nrof_thresholds))
    fprs = np.zeros((nrof_folds, nrof_thresholds))
    accuracy = np.zeros((nrof_folds))
    best = np.zeros((nrof_folds))
    indices = np.arange(nrof_pairs)
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        acc_train = np.zeros((nrof_thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = calculate_accuracy(threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = calculate_accuracy(
                threshold, dist[test_set], actual_issame[test_set])
        _, _, accuracy[fold_idx] = calculate_accuracy(thresholds[best_threshold_index], dist[test_set],
                                                      actual_issame[test_set])
        best[fold_idx] = thresholds[best_threshold_index]
    tpr = np.mean(tprs, 0)
    fpr = np.mean(fprs, 0)
    return tpr, fpr, accuracy, best, dist


def calculate_val_far(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    val = float(true_accept) / float(n_same)
    far = float(false_accept) / float(n_diff)
    return val, far


def calculate_val(thresholds, embeddings1, embeddings2, actual_issame, far_target, nrof_folds=10):
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    nrof_thresholds = len(thresholds)
    k_fold = LFold(n_splits=nrof_folds, shuffle=False)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    indices = np.arange(nrof_pairs)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        far_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = calculate_val_far(threshold, dist[train_set], actual_issame[train_set])
        if np.max(far_train) >= far_target:
            threshold = slinear_scipy_1_9(far_train, thresholds, far_target)
        else:
            threshold = 0.0
        chosen[fold_idx] = threshold
        val[fold_idx], far[fold_idx] = calculate_val_far(threshold, dist[test_set], actual_issame[test_set])
    return np.mean(val), np.std(val), np.mean(far), val, far, chosen


def main():
    e_path, flip_path, issame_path, out_path = sys.argv[1:5]
    emb = np.load(e_path).astype(np.float64)
    embeddings_list = [emb]
    if flip_path != '-':
        embeddings_list.append(np.load(flip_path).astype(np.float64))
    issame = np.load(issame_path).astype(bool)
    _xnorm = 0.0
    _xnorm_cnt = 0
    for embed in embeddings_list:
        for i in range(embed.shape[0]):
            _em = embed[i]
            _norm = np.linalg.norm(_em)
            _xnorm += _norm
            _xnorm_cnt += 1
    _xnorm /= _xnorm_cnt
    embeddings = embeddings_list[0] if len(embeddings_list) == 1 else embeddings_list[0] + embeddings_list[1]
    embeddings = normalize(embeddings)
    thresholds = np.arange(0, 4, 0.01)
    e1, e2 = embeddings[0::2], embeddings[1::2]
    tpr, fpr, accuracy, best, dist = calculate_roc(thresholds, e1, e2, issame, nrof_folds=10)
    thresholds = np.arange(0, 4, 0.001)
    val, val_std, far, fold_val, fold_far, chosen = calculate_val(thresholds, e1, e2, issame, 1e-3, nrof_folds=10)
    out = {
        'accuracy': float(np.mean(accuracy)), 'std': float(np.std(accuracy)),
        'fold_accuracy': accuracy.tolist(), 'thresholds': best.tolist(),
        'val': float(val), 'val_std': float(val_std), 'far': float(far),
        'fold_val': fold_val.tolist(), 'fold_far': fold_far.tolist(), 'val_thresholds': chosen.tolist(),
        'xnorm': float(_xnorm), 'distances': dist.tolist(), 'roc_tpr': tpr.tolist(), 'roc_fpr': fpr.tolist(),
    }
    with open(out_path, 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main()

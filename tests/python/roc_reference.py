#!/usr/bin/env python3
"""scikit-learn's roc_curve, transcribed in plain numpy, as the reference for facetrain's
eval::roc_curve (tests/unit/test_eval_roc.cpp runs it; scikit-learn itself is not installed on
the test machines).

Transcribed from sklearn/metrics/_ranking.py (scikit-learn 1.3-1.5): `_binary_clf_curve` with
pos_label=1 and no sample weights, and `roc_curve` with drop_intermediate=True. Since 1.3 the
prepended threshold is np.inf (before: thresholds[0] + 1).

usage: roc_reference.py INPUT OUTPUT
  INPUT:  one "score label" per line (label 0 or 1)
  OUTPUT: one "fpr tpr threshold" per ROC point, each printed with repr (round-trips exactly)
"""
import sys

import numpy as np


def binary_clf_curve(y_true, y_score):
    y_true = y_true == 1
    # sort scores and corresponding truth values (sklearn: stable ascending sort, reversed)
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    weight = 1.0
    # y_score typically has many tied values: take the last index of each run of equal scores
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    # sklearn's stable_cumsum is np.cumsum in float64 plus a consistency check
    tps = np.cumsum(y_true * weight, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    return fps, tps, y_score[threshold_idxs]


def roc_curve(y_true, y_score, drop_intermediate=True):
    fps, tps, thresholds = binary_clf_curve(y_true, y_score)
    if drop_intermediate and len(fps) > 2:
        optimal_idxs = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps = fps[optimal_idxs]
        tps = tps[optimal_idxs]
        thresholds = thresholds[optimal_idxs]
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    thresholds = np.r_[np.inf, thresholds]
    if fps[-1] <= 0:
        fpr = np.repeat(np.nan, fps.shape)  # sklearn warns; facetrain refuses this input
    else:
        fpr = fps / fps[-1]
    if tps[-1] <= 0:
        tpr = np.repeat(np.nan, tps.shape)
    else:
        tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def tar_at_far(fpr, tpr, far):
    """insightface eval_ijbc.py: flip, then min over (|fpr - far|, index)."""
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)
    _, min_index = min(list(zip(abs(fpr - far), range(len(fpr)))))
    return tpr[min_index]


def main():
    data = np.loadtxt(sys.argv[1], dtype=np.float64, ndmin=2)
    fpr, tpr, thr = roc_curve(data[:, 1].astype(int), data[:, 0])
    with open(sys.argv[2], "w") as out:
        for f, t, h in zip(fpr, tpr, thr):
            out.write("%r %r %r\n" % (float(f), float(t), float(h)))


if __name__ == "__main__":
    main()

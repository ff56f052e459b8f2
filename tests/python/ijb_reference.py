#!/usr/bin/env python3
"""insightface's IJB-B/C 1:1 template scoring, transcribed in plain numpy, as the reference for
facetrain's eval::ijb_template_scores / evaluate_ijb (tests/unit/test_eval_ijb.cpp runs it).

Transcribed from deepinsight/insightface recognition/arcface_torch/eval_ijbc.py:
read_template_media_list, read_template_pair_list, the use_detector_score step,
image2template_feature, verification, and the TAR@FAR table (np.flipud, then min over
(|fpr - far|, index)). Two replacements, with the same arithmetic:
  * pandas.read_csv(sep=' ') -> str.split();  * sklearn.preprocessing.normalize -> its body
    (np.einsum row norms, norms below 10 * eps set to 1, then a division).
One deliberate difference: eval_ijbc.py holds the image features and detector scores in float32
(np.float32 arrays) up to the template sums; this reference, like facetrain, uses float64 throughout.

usage: ijb_reference.py ROOT TARGET FEATURES OUTPUT [--no-detector-score]
  FEATURES: one image per line (landmarks-file order), D numbers (emb + emb_flip)
  OUTPUT:   "score <repr> <repr>" per pair (sklearn's einsum norm, then a sequential norm), then
            "tar <far> <repr>" for FAR 1e-6 ... 1e-1 (from the first scores)
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roc_reference import roc_curve, tar_at_far  # noqa: E402


def read_rows(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def read_template_media_list(path):
    ijb_meta = np.array(read_rows(path), dtype=object)
    templates = ijb_meta[:, 1].astype(int)
    medias = ijb_meta[:, 2].astype(int)
    return templates, medias


def read_template_pair_list(path):
    pairs = np.array(read_rows(path), dtype=object)
    t1 = pairs[:, 0].astype(int)
    t2 = pairs[:, 1].astype(int)
    label = pairs[:, 2].astype(int)
    return t1, t2, label


def normalize(X, sequential_norm=False):
    """sklearn.preprocessing.normalize(X) for a dense float64 X (norm='l2', axis=1).

    sequential_norm: sum the squares one after another (np.cumsum) instead of with np.einsum,
    whose SIMD accumulation order depends on the numpy build; facetrain sums sequentially, so
    with this option its scores must be bit-identical to this transcription."""
    if sequential_norm:
        norms = np.sqrt(np.cumsum(X * X, axis=1)[:, -1])
    else:
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0  # _handle_zeros_in_scale
    return X / norms[:, np.newaxis]


def image2template_feature(img_feats=None, templates=None, medias=None, sequential_norm=False):
    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), img_feats.shape[1]))
    for count_template, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_norm_feats = img_feats[ind_t]
        face_medias = medias[ind_t]
        unique_medias, unique_media_counts = np.unique(face_medias, return_counts=True)
        media_norm_feats = []
        for u, ct in zip(unique_medias, unique_media_counts):
            (ind_m,) = np.where(face_medias == u)
            if ct == 1:
                media_norm_feats += [face_norm_feats[ind_m]]
            else:  # image features from the same video are aggregated into one feature
                media_norm_feats += [np.mean(face_norm_feats[ind_m], axis=0, keepdims=True)]
        media_norm_feats = np.array(media_norm_feats)
        template_feats[count_template] = np.sum(media_norm_feats, axis=0)
    template_norm_feats = normalize(template_feats, sequential_norm)
    return template_norm_feats, unique_templates


def verification(template_norm_feats=None, unique_templates=None, p1=None, p2=None):
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count_template, uqt in enumerate(unique_templates):
        template2id[uqt] = count_template
    score = np.zeros((len(p1),))
    total_pairs = np.array(range(len(p1)))
    batchsize = 100000
    sublists = [total_pairs[i:i + batchsize] for i in range(0, len(p1), batchsize)]
    for c, s in enumerate(sublists):
        feat1 = template_norm_feats[template2id[p1[s]]]
        feat2 = template_norm_feats[template2id[p2[s]]]
        similarity_score = np.sum(feat1 * feat2, -1)
        score[s] = similarity_score.flatten()
    return score


def main():
    root, target, features_path, output = sys.argv[1:5]
    use_detector_score = "--no-detector-score" not in sys.argv[5:]
    t = target.lower()
    templates, medias = read_template_media_list(os.path.join(root, "meta", "%s_face_tid_mid.txt" % t))
    p1, p2, label = read_template_pair_list(os.path.join(root, "meta", "%s_template_pair_label.txt" % t))
    files = read_rows(os.path.join(root, "meta", "%s_name_5pts_score.txt" % t))
    faceness_scores = np.array([row[-1] for row in files]).astype(np.float64)  # eval_ijbc.py: float32
    img_input_feats = np.loadtxt(features_path, dtype=np.float64, ndmin=2)
    if use_detector_score:
        img_input_feats = img_input_feats * faceness_scores[:, np.newaxis]
    template_norm_feats, unique_templates = image2template_feature(img_input_feats, templates, medias)
    score = verification(template_norm_feats, unique_templates, p1, p2)
    seq_feats, _ = image2template_feature(img_input_feats, templates, medias, sequential_norm=True)
    seq_score = verification(seq_feats, unique_templates, p1, p2)
    fpr, tpr, _ = roc_curve(label, score)
    with open(output, "w") as out:
        for s, q in zip(score, seq_score):
            out.write("score %r %r\n" % (float(s), float(q)))
        for far in [10**-6, 10**-5, 10**-4, 10**-3, 10**-2, 10**-1]:
            out.write("tar %r %r\n" % (float(far), float(tar_at_far(fpr, tpr, far))))


if __name__ == "__main__":
    main()

#pragma once
// ROC curves as scikit-learn's roc_curve computes them, TAR at a given FAR, and ROC plots (PNG).
// Placeholder: the IJB helper fills this in (see ijb.h).

#include <string>
#include <vector>

namespace facetrain::eval {

/// One ROC curve: points (fpr[i], tpr[i]) at decision threshold thresholds[i] (score >= t).
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};

}  // namespace facetrain::eval

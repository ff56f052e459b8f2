#pragma once
// IJB-B / IJB-C 1:1 verification (formats.md section 5). Placeholder: the IJB helper fills it in.

#include "facetrain/eval/roc.h"

namespace facetrain::eval {}  // namespace facetrain::eval

#include "facetrain/eval/roc.h"

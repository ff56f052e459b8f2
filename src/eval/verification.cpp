#include "facetrain/eval/verification.h"

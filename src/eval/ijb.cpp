#include "facetrain/eval/ijb.h"

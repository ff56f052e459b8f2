#include "facetrain/io/npy.h"

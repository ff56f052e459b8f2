#include "facetrain/eval/embed.h"

#!/usr/bin/env bash
# `facetrain eval | embed | export`: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_eval_test.sh
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
exit $fail

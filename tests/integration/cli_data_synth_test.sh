#!/usr/bin/env bash
# `facetrain data synth`: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_data_synth_test.sh
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
py=/usr/bin/python3
tmp=$(mktemp -d)

check synth 0 'wrote 24 image\(s\) of 6 identities .* 10 pairs of 3 unseen identities to .*/out/synth_val.bin' -- \
  "$FACETRAIN" data synth --out "$tmp/out" --identities 6 --images-per-identity 4 --val-identities 3 --val-pairs 10 \
  --seed 5 --threads 2
check synth-progress 0 'synth: image 44/44 \(100.0%\)' -- \
  "$FACETRAIN" data synth --out "$tmp/again" --identities 6 --images-per-identity 4 --val-identities 3 --val-pairs 10 \
  --seed 5 --threads 1
for f in train.rec train.idx property synth_val.bin; do
  if [ -s "$tmp/out/$f" ]; then echo "ok   file-$f"; else echo "FAIL file-$f: missing or empty in $tmp/out"; fail=1; fi
done
if [ "$(cat "$tmp/out/property")" = "6,112,112" ]; then echo "ok   property"; else
  echo "FAIL property: '$(cat "$tmp/out/property")'"; fail=1; fi
# Same seed and options, another thread count: the same bytes.
if cmp -s "$tmp/out/train.rec" "$tmp/again/train.rec" && cmp -s "$tmp/out/synth_val.bin" "$tmp/again/synth_val.bin"; then
  echo "ok   deterministic"
else
  echo "FAIL deterministic: $tmp/out and $tmp/again differ"; fail=1
fi
if $py -c '
import pickle, sys
images, issame = pickle.load(open(sys.argv[1], "rb"))
assert len(images) == 20 and len(issame) == 10, (len(images), len(issame))
assert sum(issame) == 5, issame
assert all(type(b) is bytes and b[:2] == b"\xff\xd8" for b in images)
' "$tmp/out/synth_val.bin"; then echo "ok   val-bin-python"; else echo "FAIL val-bin-python"; fail=1; fi

check bad-identities 2 'error: data synth: --identities: must be >= 2, got 1' -- \
  "$FACETRAIN" data synth --out "$tmp/bad" --identities 1
check bad-val-pairs 2 'error: data synth: --val-pairs: must be even' -- \
  "$FACETRAIN" data synth --out "$tmp/bad" --val-pairs 3
check bad-images 2 'images-per-identity: must be >= 1' -- \
  "$FACETRAIN" data synth --out "$tmp/bad" --images-per-identity 0
if [ -e "$tmp/bad" ]; then echo "FAIL bad-args-no-output: $tmp/bad was created"; fail=1; else echo "ok   bad-args-no-output"; fi
check missing-out 106 '--out is required' -- "$FACETRAIN" data synth --identities 3
: > "$tmp/file"
check unwritable 1 "error: .*$tmp/file/sub: cannot create the output folder" -- \
  "$FACETRAIN" data synth --out "$tmp/file/sub" --identities 2 --images-per-identity 1 --val-pairs 2

rm -rf "$tmp"
exit $fail

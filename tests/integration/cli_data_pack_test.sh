#!/usr/bin/env bash
# `facetrain data pack | unpack | inspect`: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_data_pack_test.sh
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
py=/usr/bin/python3
tmp=$(mktemp -d)

# A small image folder of tiny PGM images (OpenCV decodes them): classes "10", "2" (one image in a
# sub-folder) and "x"; ImageFolder orders them 10, 2, x.
pgm() { mkdir -p "$(dirname "$1")"; printf 'P5\n2 2\n255\n%s' "$2" > "$1"; }
pgm "$tmp/faces/10/a.pgm" abcd
pgm "$tmp/faces/10/b.pgm" efgh
pgm "$tmp/faces/2/c.pgm" ijkl
pgm "$tmp/faces/2/sub/d.pgm" mnop
pgm "$tmp/faces/2/e.pgm" qrst
pgm "$tmp/faces/x/f.pgm" uvwx

check pack 0 'packed 6 image\(s\) of 3 identities into .*/rec/train.rec' -- \
  "$FACETRAIN" data pack --images "$tmp/faces" --out "$tmp/rec/train" --threads 2
check pack-progress 0 'pack: image 6/6 \(100.0%\)' -- "$FACETRAIN" data pack --images "$tmp/faces" --out "$tmp/rec/train"
if [ "$(cat "$tmp/rec/property" 2>/dev/null)" = "3,112,112" ] && [ -s "$tmp/rec/train.idx" ]; then
  echo "ok   pack-files"
else
  echo "FAIL pack-files: no train.idx or property '3,112,112' in $tmp/rec"; fail=1
fi

check inspect 0 'layout: MS1M layout: 6 images, 3 classes' -- "$FACETRAIN" data inspect "$tmp/rec/train.rec"
check inspect-counts 0 'images per identity: min 1, median 2, max 3' -- "$FACETRAIN" data inspect "$tmp/rec/train.rec"
check inspect-decode 0 'problems: 0' -- "$FACETRAIN" data inspect "$tmp/rec/train.rec" --decode --threads 3
check inspect-folder 0 'kind: image_folder' -- "$FACETRAIN" data inspect "$tmp/faces"

# --json: stdout holds the report only (progress goes to stderr), as valid JSON.
"$FACETRAIN" data inspect "$tmp/rec/train.rec" --json > "$tmp/report.json" 2> "$tmp/report.err"
if $py -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kind"] == "recordio", d
assert d["layout"] == "MS1M layout: 6 images, 3 classes", d
assert (d["images"], d["identities"]) == (6, 3), d
assert d["images_per_identity"] == {"min": 1, "median": 2.0, "max": 3}, d
assert d["problems"] == [] and d["problem_count"] == 0, d
assert d["path"].endswith("train.rec"), d
' "$tmp/report.json"; then
  echo "ok   inspect-json"
else
  echo "FAIL inspect-json: $(head -c 400 "$tmp/report.json")"; fail=1
fi

# unpack gives the files back, byte for byte: OUT/<label>/<key>.jpg in ImageFolder order.
check unpack 0 'unpacked 6 image\(s\) of 3 identities into' -- "$FACETRAIN" data unpack "$tmp/rec/train.rec" --out "$tmp/out"
ok=1
for pair in 0/1:10/a.pgm 0/2:10/b.pgm 1/3:2/c.pgm 1/4:2/e.pgm 1/5:2/sub/d.pgm 2/6:x/f.pgm; do
  cmp -s "$tmp/out/${pair%%:*}.jpg" "$tmp/faces/${pair#*:}" || { echo "FAIL unpack-bytes: $pair differ"; ok=0; fail=1; }
done
n=$(find "$tmp/out" -type f | wc -l)
[ "$n" -eq 6 ] || { echo "FAIL unpack-count: $n files"; ok=0; fail=1; }
[ $ok = 1 ] && echo "ok   unpack-bytes"

# Problems are listed, not failures.
printf 'not an image' > "$tmp/faces/x/bad.jpg"
check inspect-problems 0 'problems: 1' -- "$FACETRAIN" data inspect "$tmp/faces" --decode
check inspect-problem-line 0 "bad.jpg': the image does not decode" -- "$FACETRAIN" data inspect "$tmp/faces" --decode

# Errors: exit 1 (a DataError) with a message naming the file; 106 for a missing option.
check unpack-missing 1 "error: RecordIO file '.*/nope.rec': cannot open it" -- "$FACETRAIN" data unpack "$tmp/nope.rec" --out "$tmp/o"
check inspect-missing 1 "error: RecordIO file '.*/nope.rec': cannot open it" -- "$FACETRAIN" data inspect "$tmp/nope.rec"
check inspect-missing-folder 1 "error: .*no_such_folder" -- "$FACETRAIN" data inspect "$tmp/no_such_folder"
check pack-missing 1 "error: .*nolist.lst" -- "$FACETRAIN" data pack --images "$tmp/nolist.lst" --out "$tmp/x"
head -c 100 "$tmp/rec/train.rec" > "$tmp/cut.rec"
check inspect-truncated 1 "error: RecordIO file '.*/cut.rec'.*truncated" -- "$FACETRAIN" data inspect "$tmp/cut.rec"
check pack-no-out 106 '--out is required' -- "$FACETRAIN" data pack --images "$tmp/faces"

rm -rf "$tmp"
exit $fail

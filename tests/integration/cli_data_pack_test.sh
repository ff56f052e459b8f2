#!/usr/bin/env bash
# `facetrain data pack | unpack | inspect` (RecordIO, image folders, verification .bin): usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_data_pack_test.sh
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

# Verification .bin files (tests/data/verification, tests/python/make_verification_fixtures.py):
# images 0-3 and 5 JPEG (5 is 96x112), 4 PNG, image 3 = image 1; issame 1 0 1.
vdir="$SOURCE/tests/data/verification"
check bin-inspect-pairs 0 'pairs: 3' -- "$FACETRAIN" data inspect "$vdir/py2_protocol2.bin"
check bin-inspect-variant 0 'variant: python2 protocol 2 \(str elements\)' -- "$FACETRAIN" data inspect "$vdir/py2_protocol2.bin"
check bin-inspect-counts 0 'genuine: 2' -- "$FACETRAIN" data inspect "$vdir/numpy_protocol5.bin"
check bin-inspect-sizes 0 '  112x112: 5' -- "$FACETRAIN" data inspect "$vdir/numpy_protocol5.bin"
check bin-inspect-encodings 0 '  JPEG: 5' -- "$FACETRAIN" data inspect "$vdir/numpy_protocol5.bin" --decode
check bin-inspect-numpy 0 'variant: protocol 5 \(numpy uint8 arrays via _frombuffer, numpy.core\)' -- \
  "$FACETRAIN" data inspect "$vdir/numpy_protocol5.bin"
"$FACETRAIN" data inspect "$vdir/numpy2_protocol4.bin" --json > "$tmp/bin.json" 2> "$tmp/bin.err"
if $py -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kind"] == "verification_bin", d
assert d["variant"] == "protocol 4 (numpy uint8 arrays, numpy._core)", d
assert (d["pairs"], d["genuine"], d["impostor"], d["images"]) == (3, 2, 1, 6), d
assert d["image_sizes"] == {"112x112": 5, "96x112": 1}, d
assert d["encodings"] == {"JPEG": 5, "PNG": 1}, d
assert d["problems"] == [] and d["problem_count"] == 0, d
' "$tmp/bin.json"; then
  echo "ok   bin-inspect-json"
else
  echo "FAIL bin-inspect-json: $(head -c 400 "$tmp/bin.json") $(head -c 400 "$tmp/bin.err")"; fail=1
fi

# unpack: OUT/<index>.jpg with the stored bytes (the PNG too), OUT/issame.txt with 1 / 0 lines.
check bin-unpack 0 'unpacked 6 image\(s\) of 3 pair\(s\) into .*/vout' -- \
  "$FACETRAIN" data unpack "$vdir/py3_protocol2.bin" --out "$tmp/vout"
ok=1
for pair in 0:0.jpg 1:1.jpg 2:2.jpg 3:1.jpg 4:4.png 5:5.jpg; do
  cmp -s "$tmp/vout/${pair%%:*}.jpg" "$vdir/images/${pair#*:}" || { echo "FAIL bin-unpack-bytes: $pair differ"; ok=0; fail=1; }
done
[ "$(cat "$tmp/vout/issame.txt" 2>/dev/null)" = "$(printf '1\n0\n1')" ] || { echo "FAIL bin-unpack-issame"; ok=0; fail=1; }
n=$(find "$tmp/vout" -type f | wc -l)
[ "$n" -eq 7 ] || { echo "FAIL bin-unpack-count: $n files"; ok=0; fail=1; }
[ $ok = 1 ] && echo "ok   bin-unpack-bytes"

# Bad .bin files: exit 1 with a message naming the file.
head -c 2000 "$vdir/py3_protocol4.bin" > "$tmp/cut.bin"
check bin-inspect-truncated 1 "error: truncated pickle at byte [0-9]+ of .*/cut.bin" -- "$FACETRAIN" data inspect "$tmp/cut.bin"
check bin-unpack-truncated 1 "error: truncated pickle .*/cut.bin" -- "$FACETRAIN" data unpack "$tmp/cut.bin" --out "$tmp/x"
check bin-inspect-float32 1 "error: .*/bad_float32.bin: image 0: a numpy array of dtype 'f4' \(float32\)" -- \
  "$FACETRAIN" data inspect "$vdir/bad_float32.bin"
check bin-inspect-global 1 "error: refusing to load global 'posix.system' at byte [0-9]+ of .*/bad_global.bin" -- \
  "$FACETRAIN" data inspect "$vdir/bad_global.bin"
check bin-inspect-missing 1 "error: cannot open verification bin '.*/nope.bin'" -- "$FACETRAIN" data inspect "$tmp/nope.bin"

rm -rf "$tmp"
exit $fail

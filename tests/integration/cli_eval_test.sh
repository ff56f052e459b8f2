#!/usr/bin/env bash
# `facetrain eval | eval ijb | embed | export`: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_eval_test.sh
# Needs Debian's python3 with torch and numpy (scripts/setup.sh --tests) for the weights and checks.
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A random MobileFaceNet (128-d) saved by PyTorch, with insightface's parameter names.
PYTHONPATH="$SOURCE/tests/python" "$py" -c "
import torch, insightface_models as m
torch.manual_seed(0)
torch.save(m.build('mobilefacenet', embedding_size=128).state_dict(), '$tmp/mbf.pth')" || { echo "FAIL python3 with torch"; exit 1; }
"$FACETRAIN" data synth --out "$tmp/s" --identities 2 --images-per-identity 1 --val-identities 10 --val-pairs 40 \
  --threads 2 >/dev/null 2>&1 || { echo "FAIL data synth"; exit 1; }
model=(--checkpoint "$tmp/mbf.pth" --model mbf --set model.embedding_size=128)

check eval-bin 0 'synth_val +40  0\.[0-9]{5} \+- 0\.[0-9]{5}' -- \
  "$FACETRAIN" eval "${model[@]}" --bin "$tmp/s/synth_val.bin" --batch-size 16 --threads 2 --json "$tmp/bin.json" --plot "$tmp/plots"
check eval-bin-progress 0 'synth_val: image 80/80 \(100.0%\)' -- \
  "$FACETRAIN" eval "${model[@]}" --bin "$tmp/s/synth_val.bin" --batch-size 16
if [ "$(head -c 4 "$tmp/plots/synth_val_roc.png" | tail -c 3)" = "PNG" ]; then echo "ok   eval-plot"; else
  echo "FAIL eval-plot: no PNG at $tmp/plots/synth_val_roc.png"; fail=1; fi

# embed: raw float64 emb + emb_flip, which `eval --embeddings` must score exactly as `eval --bin` did.
check embed 0 'wrote 80 embedding\(s\) of size 128 to .*e\.npy and their order to .*e\.txt' -- \
  "$FACETRAIN" embed "${model[@]}" --bin "$tmp/s/synth_val.bin" --out "$tmp/e.npy" --flip --no-normalize --float64
"$py" -c "
import pickle, numpy as np
bins, issame = pickle.load(open('$tmp/s/synth_val.bin', 'rb'), encoding='bytes')
np.save('$tmp/issame.npy', np.array(issame, dtype=bool))
np.save('$tmp/short.npy', np.array(issame[:-1], dtype=bool))
e = np.load('$tmp/e.npy'); assert e.shape == (80, 128) and e.dtype == np.float64, (e.shape, e.dtype)"
check eval-embeddings 0 'e +40  0\.[0-9]{5}' -- \
  "$FACETRAIN" eval --embeddings "$tmp/e.npy" --issame "$tmp/issame.npy" --json "$tmp/emb.json"
# The same accuracy, VAL and FAR from the model and from its exported embeddings; and every figure
# equal (1e-12) to insightface's verification.py functions on the same embeddings.
"$py" "$SOURCE/tests/python/verification_reference.py" "$tmp/e.npy" - "$tmp/issame.npy" "$tmp/ref.json"
if "$py" -c "
import json, sys
a = json.load(open('$tmp/bin.json'))['synth_val']; b = json.load(open('$tmp/emb.json'))['e']; r = json.load(open('$tmp/ref.json'))
for k in ['accuracy', 'std', 'thresholds', 'val', 'val_std', 'far', 'pairs']:
    assert a[k] == b[k], (k, a[k], b[k])
for k, rk in [('accuracy', 'accuracy'), ('std', 'std'), ('val', 'val'), ('val_std', 'val_std'), ('far', 'far'), ('xnorm', 'xnorm')]:
    assert abs(b[k] - r[rk]) <= 1e-12, (k, b[k], r[rk])
assert b['thresholds'] == r['thresholds'], (b['thresholds'], r['thresholds'])
"; then echo "ok   eval-embeddings-match"; else echo "FAIL eval-embeddings-match"; fail=1; fi
if [ "$(wc -l < "$tmp/e.txt")" = 80 ] && [ "$(head -1 "$tmp/e.txt")" = "synth_val.bin:0" ]; then echo "ok   embed-order"; else
  echo "FAIL embed-order"; fail=1; fi

check eval-usage 2 'give either --bin files' -- "$FACETRAIN" eval
check eval-usage-issame 2 '--embeddings needs --issame' -- "$FACETRAIN" eval --embeddings "$tmp/e.npy"
check eval-missing-bin 1 "missing\.bin" -- "$FACETRAIN" eval "${model[@]}" --bin "$tmp/missing.bin"
check eval-count-mismatch 1 "has 80 rows but '.*short\.npy' has 39 labels" -- \
  "$FACETRAIN" eval --embeddings "$tmp/e.npy" --issame "$tmp/short.npy"
check eval-wrong-model 1 "mbf\.pth" -- "$FACETRAIN" eval --checkpoint "$tmp/mbf.pth" --model mbf --bin "$tmp/s/synth_val.bin"
check eval-bad-device 2 "--device: 'gpu' is not a device" -- "$FACETRAIN" eval "${model[@]}" --bin "$tmp/s/synth_val.bin" --device gpu

# export: PyTorch loads the weights into insightface's model and gets our numbers.
check export 0 'wrote the mobilefacenet backbone weights \([0-9]+ tensors\) to .*out\.pth' -- \
  "$FACETRAIN" export "${model[@]}" --out "$tmp/out.pth"
if PYTHONPATH="$SOURCE/tests/python" "$py" -c "
import torch, insightface_models as m
net = m.build('mobilefacenet', embedding_size=128); net.load_state_dict(torch.load('$tmp/out.pth')); net.eval()
ref = torch.load('$tmp/mbf.pth')
assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())
"; then echo "ok   export-loads-in-pytorch"; else echo "FAIL export-loads-in-pytorch"; fail=1; fi

# eval ijb on a tiny synthetic IJB-C layout.
check synth-ijb 0 'wrote [0-9]+ images of 4 identities in the IJBC layout' -- \
  "$FACETRAIN" data synth-ijb --out "$tmp/ijbc" --identities 4 --seed 3
check eval-ijb 0 'TAR @ FAR +1e-06 +1e-05 +1e-04 +1e-03 +1e-02 +1e-01' -- \
  "$FACETRAIN" eval ijb "${model[@]}" --root "$tmp/ijbc" --target IJBC --json "$tmp/ijb.json" --plot "$tmp/plots"
if "$py" -c "
import json; r = json.load(open('$tmp/ijb.json'))['IJBC']
assert r['pairs'] == r['genuine'] + r['impostor'] and r['genuine'] > 0 and len(r['tar_at_far']) == 6
assert all(0 <= v <= 1 for v in r['tar_at_far'].values())
" && [ -s "$tmp/plots/IJBC_roc.png" ]; then echo "ok   eval-ijb-json-plot"; else echo "FAIL eval-ijb-json-plot"; fail=1; fi
check eval-ijb-missing 1 "ijbb_face_tid_mid\.txt" -- "$FACETRAIN" eval ijb "${model[@]}" --root "$tmp/ijbc" --target IJBB
exit $fail

"""The tables of bench/gpu_bench.sh's results, in Markdown for docs/benchmarks.md.

usage: python3 bench/gpu_summary.py OUT     (OUT holds train.jsonl, python.jsonl, head.jsonl)
Ratios compare runs of the same model, batch and precision from the same run of gpu_bench.sh.
facetrain's figure is its in-memory input (no decoding), as the PyTorch script's fixed batch; the
.rec column is its loader on the same step.
"""
import json
import os
import sys


def lines(path):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def gib(b):
    return "%.2f GiB" % (b / 2**30) if b and b > 0 else "n/a"


def main():
    out = sys.argv[1]
    ft = {}
    for r in lines(os.path.join(out, "train.jsonl")):
        runs = {x["input"]: x for x in r["runs"]}
        ft[(r["model"], r["batch_size"], r["amp"])] = (r, runs)
    py = {}
    for r in lines(os.path.join(out, "python.jsonl")):
        res = r["result"]
        if "img_per_sec" in res:
            py[(r["model"], r["batch"], r["amp"], r["mode"])] = res
    keys = sorted(set(k[:3] for k in py) | set(ft), key=lambda k: (k[0], k[1], k[2]))

    print("### Training step: facetrain against arcface_torch's step in PyTorch (img/s)\n")
    print("| model | batch | amp | facetrain (memory) | facetrain (.rec) | PyTorch eager | torch.compile "
          "| facetrain / eager | facetrain / compile | MFU (facetrain) | peak memory facetrain / eager |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in keys:
        r, runs = ft.get(k, (None, {}))
        mem, rec = runs.get("memory"), runs.get("loader")
        eager, comp = py.get(k + ("eager",)), py.get(k + ("compile",))

        def ips(x):
            return "%.0f" % x["img_per_sec"] if x else "—"

        def ratio(a, b):
            return "%.2fx" % (a["img_per_sec"] / b["img_per_sec"]) if a and b else "—"

        mfu = "%.1f %%" % (100 * mem["mfu"]) if mem and "mfu" in mem else "—"
        memory = "%s / %s" % (gib(mem["peak_bytes"]) if mem else "n/a",
                              gib(eager.get("peak_memory_bytes")) if eager else "n/a")
        print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0], k[1], k[2], ips(mem), ips(rec), ips(eager), ips(comp), ratio(mem, eager), ratio(mem, comp), mfu,
            memory))
    for k, (r, runs) in sorted(ft.items()):
        print("\nFLOPs per image, %s: %.2f GFLOP (6 x multiply-adds of convolutions, linears and the head's "
              "cosines; peak %.1f TFLOP/s)" % (k[0], r["flops_per_image"] / 1e9, r["peak_tflops"]))
        break

    heads = lines(os.path.join(out, "head.jsonl"))
    if heads:
        print("\n### Head + cross-entropy on the GPU, B = %d, D = %d, SGD (peak allocated)\n" % (
            heads[0]["rows"], heads[0]["embedding_size"]))
        print("| classes | path | peak | estimate | seconds per step |")
        print("|---:|---|---:|---:|---:|")
        for h in heads:
            path = "chunked (%d)" % h["chunk"] if h["chunk"] else "plain"
            print("| %d | %s | %s | %s | %.3f |" % (h["num_classes"], path, gib(h["peak_bytes"]),
                                                    gib(h["estimate_bytes"]), h["seconds_per_step"]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks that PyTorch reads a state dict written by facetrain's C++ write_state_dict.

    /usr/bin/python3 tests/python/check_state_dict.py FILE

Run by the C++ test StateDictInterop.CppSaveIsReadByPython (tests/unit/test_io_state_dict.cpp),
which writes FILE with exactly the entries listed in EXPECTED_SPECS below (keep the two in sync).
torch.load must return an OrderedDict (or dict) with exactly these names, in this order, with
these dtypes, shapes and values (fixture_pattern.pattern, as for make_io_fixtures.py), as
contiguous CPU tensors. Where torch.load has weights_only (PyTorch >= 1.13), the file must also
load with weights_only=True, PyTorch's own allow-listed unpickler.

Exit status: 0 when everything matches, 1 with a list of differences otherwise, 2 for bad
usage, 3 when this Python has no torch (install it with `scripts/setup.sh --tests`).
"""

import collections
import os
import sys

try:
    import torch
except ImportError as e:
    print("check_state_dict.py: %s cannot import torch (%s); run scripts/setup.sh --tests to install "
          "Debian's python3-torch" % (sys.executable, e), file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_pattern import pattern  # noqa: E402


# (name, dtype, shape); the index of an entry (see `pattern`) is its position here.
EXPECTED_SPECS = [
    ("layer.weight", torch.float32, (3, 4)),
    ("layer.bias", torch.float32, (3,)),
    ("bn.num_batches_tracked", torch.int64, ()),
    ("half.weight", torch.float16, (2, 2)),
    ("bf16", torch.bfloat16, (3,)),
    ("f64", torch.float64, (2,)),
    ("mask", torch.bool, (4,)),
    ("i8", torch.int8, (3,)),
    ("u8", torch.uint8, (2,)),
    ("i16", torch.int16, (2,)),
    ("i32", torch.int32, (2,)),
    ("transposed", torch.float32, (4, 3)),  # written from pattern((3, 4), 11).t(), a non-contiguous view
    ("empty", torch.float32, (0, 5)),
    ("conv.weight", torch.float32, (2, 3, 2, 2)),
]


def expected_value(index, name, dtype, shape):
    if name == "transposed":
        return pattern((shape[1], shape[0]), index, dtype).t()
    return pattern(shape, index, dtype)


def main():
    if len(sys.argv) != 2:
        print("usage: check_state_dict.py FILE", file=sys.stderr)
        return 2
    path = sys.argv[1]
    problems = []
    loaded = torch.load(path, map_location="cpu")
    try:
        strict = torch.load(path, map_location="cpu", weights_only=True)
        if list(strict) != list(loaded):
            problems.append("weights_only=True load gives different keys: %s" % list(strict))
    except TypeError:
        pass  # a torch without weights_only
    except Exception as e:  # noqa: BLE001 - any refusal is a finding
        problems.append("torch.load(weights_only=True) failed: %r" % e)

    if not isinstance(loaded, (collections.OrderedDict, dict)):
        problems.append("top level is %s, not an OrderedDict" % type(loaded).__name__)
    else:
        names = [name for name, _, _ in EXPECTED_SPECS]
        if list(loaded.keys()) != names:
            problems.append("names %s, expected %s" % (list(loaded.keys()), names))
        for index, (name, dtype, shape) in enumerate(EXPECTED_SPECS):
            tensor = loaded.get(name)
            if not isinstance(tensor, torch.Tensor):
                problems.append("%s: %r is not a tensor" % (name, type(tensor).__name__))
                continue
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                problems.append("%s: %s %s, expected %s %s" % (name, tensor.dtype, tuple(tensor.shape), dtype, shape))
                continue
            if tensor.requires_grad:
                problems.append("%s: requires_grad is set" % name)
            if not tensor.is_contiguous() or tensor.device.type != "cpu":
                problems.append("%s: not a contiguous CPU tensor (stride %s)" % (name, tensor.stride()))
            if not torch.equal(tensor, expected_value(index, name, dtype, shape)):
                problems.append("%s: values differ: %s" % (name, tensor))
    if problems:
        print("check_state_dict.py: %s:\n  %s" % (path, "\n  ".join(problems)), file=sys.stderr)
        return 1
    print("check_state_dict.py: %s: %d tensors as expected" % (path, len(EXPECTED_SPECS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

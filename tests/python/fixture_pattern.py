"""The values of every io test fixture tensor, shared by make_io_fixtures.py and
check_state_dict.py; the C++ tests (tests/unit/test_io_state_dict.cpp, `pattern`) compute the same.

pattern(shape, index, dtype), with j the row-major element number and index the entry's
position in its state dict:
    floating: (j % 17) * 0.25 - index        (exact in float16 and bfloat16)
    bool:     j % 3 == 0
    integer:  j % 100 + index
"""

import torch


def pattern(shape, index, dtype):
    n = 1
    for s in shape:
        n *= s
    j = torch.arange(n, dtype=torch.float64)
    if dtype.is_floating_point:
        v = (j % 17) * 0.25 - index
    elif dtype == torch.bool:
        v = (j % 3) == 0
    else:
        v = (j % 100) + index
    return v.to(dtype).reshape(shape)

#!/usr/bin/env python3
"""Starts 2 ranks the way torchrun's agent does: the agent hosts the TCPStore at MASTER_PORT and
sets TORCHELASTIC_USE_AGENT_STORE=True, so the workers join it as clients under the prefix
/worker/attempt_<TORCHELASTIC_RESTART_COUNT>. (Debian 12's own torchrun, PyTorch 1.13 on Python
3.11, fails before it starts any worker, so the agent is emulated here.)

usage: agent_store_launcher.py PORT COMMAND...   exits with the workers' largest exit code
"""
import datetime
import os
import subprocess
import sys

import torch.distributed as dist


def main():
    port = int(sys.argv[1])
    store = dist.TCPStore("127.0.0.1", port, 3, True, datetime.timedelta(seconds=60), wait_for_workers=False)
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
                   TORCHELASTIC_RESTART_COUNT="0")
        procs.append(subprocess.Popen(sys.argv[2:], env=env))
    code = max(p.wait() for p in procs)
    del store
    sys.exit(code)


if __name__ == "__main__":
    main()

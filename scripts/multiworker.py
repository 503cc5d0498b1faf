#!/usr/bin/env python
"""Multi-worker data-parallel training (``MultiWorkerMirroredStrategy``), the same command on
every machine; the program itself is ``ptft_keras.distributed.worker_main``.

    # machine I of the list (same list, same order, on every machine; worker 0 is the chief):
    python scripts/multiworker.py --workers host1:12345,host2:12345 --index I

    # both workers on this machine (CPU only, free 127.0.0.1 ports), then compared with one
    # device trained on the same global batch:
    python scripts/multiworker.py --local 2

The global batch (``--global-batch``, default 64) is split over all replicas of all workers, so
two workers take 32 examples each per step; the chief writes its final weights to ``--out``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ptft_keras.distributed import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())

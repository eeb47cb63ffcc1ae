"""Compute-node entry point: one sweep worker on the study of a prepared sweep folder.

Usage: python jobs/sweep_worker.py SWEEP_DIR [--no-wandb] [--max-trials N]
"""

import sys

from leaksweep.cli import main

if __name__ == "__main__":
    sys.argv = ["leaksweep", "worker", *sys.argv[1:]]
    main()

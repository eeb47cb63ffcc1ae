"""Compute-node entry point: run (or rerun) one trial from its folder's spec.json.

Usage: python jobs/trial.py TRIAL_DIR [--no-wandb]
"""

import sys

from leaksweep.cli import main

if __name__ == "__main__":
    sys.argv = ["leaksweep", "trial", *sys.argv[1:]]
    main()

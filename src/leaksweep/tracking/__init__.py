"""Experiment tracking, handed in to the stages and never imported by them.

The stages see only the `Run` / `Tracker` protocols (protocol.py); entry points (cli, the study's
worker entry) build a tracker with `protocol.make_tracker` and pass it down. wandb_tracker.py is the
one module that imports wandb (lazily, inside functions); redact.py cleans everything before W&B
keeps it; sync.py uploads offline runs (`leaksweep sync`); reports.py builds W&B Reports
(`leaksweep wandb-report`). A new tracking backend is a class that satisfies `Tracker` in a module of
its own here, chosen in `make_tracker`.
"""

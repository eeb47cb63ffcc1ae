"""A trial runner for tests: the simulated runner (leaksweep.simulate), except that trial GATE_TRIAL
waits for the file GATE_DIR/open before it returns, after writing GATE_DIR/waiting. A test uses the
pause to take a lock the worker will need next (the journal's, for the tell), then opens the gate, so
that the worker stops at a chosen point with no hook in leaksweep's own code."""

import os
import time
from pathlib import Path

from leaksweep import simulate


def run(spec):
    gate = os.environ.get("GATE_DIR")
    if gate and spec.trial == int(os.environ["GATE_TRIAL"]):
        Path(gate, "waiting").write_text(str(os.getpid()))
        deadline = time.time() + 120  # never hang a test run for good
        while not Path(gate, "open").exists() and time.time() < deadline:
            time.sleep(0.02)
    return simulate.run(spec)

"""A trial runner for tests: the simulated runner (leaksweep.simulate), except that the first trial it
meets is preempted once, as if Slurm had sent its warning during training: the preemption request is
set and Preempted raised (no checkpoint). PREEMPT_ONCE_MARKER names the file that records "done once"."""

import os
from pathlib import Path

from leaksweep import simulate
from leaksweep.cluster import preemption


def run(spec):
    marker = Path(os.environ["PREEMPT_ONCE_MARKER"])
    if not marker.exists():
        marker.write_text(str(spec.trial))
        preemption.requested.set()  # what the USR1 handler does
        raise preemption.Preempted(None, None)
    return simulate.run(spec)

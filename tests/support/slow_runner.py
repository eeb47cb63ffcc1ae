"""A trial runner for tests: the simulated runner (leaksweep.simulate) after SLOW_RUNNER_S seconds
of sleep, so that a test can act on a worker in the middle of a trial."""

import os
import time

from leaksweep import simulate


def run(spec):
    time.sleep(float(os.environ.get("SLOW_RUNNER_S", "0")))
    return simulate.run(spec)

"""A trial runner for tests: the simulated runner (leaksweep.simulate) after SLOW_RUNNER_S seconds
of sleep, so that a test can act on a worker in the middle of a trial."""

import os
import time

from leaksweep import simulate


def run(spec):
    time.sleep(float(os.environ.get("SLOW_RUNNER_S", "0")))
    return simulate.run(spec)


def bad_model(spec):
    """What a first trial with a mistyped model name does: a UserError the worker stops on."""
    from leaksweep.errors import UserError

    raise UserError("train.model: cannot load 'HuggingFaceTB/NoSuchModel' from the Hugging Face hub")

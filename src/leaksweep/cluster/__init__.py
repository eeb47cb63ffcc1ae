"""Where a worker runs: the job environment, Slurm submission, and preemption.

env.py (`JobEnvironment.current()`) is the one reader of the variables Slurm, `accelerate launch` and
slurm/sweep.sh set; slurm.py submits slurm/sweep.sh as an array of sweep workers and reads the tasks'
states back; preemption.py turns Slurm's warning signal into a checkpoint and a requeue. Everything
here is light (no heavy imports) and upstream of every stage. A new scheduler goes in a module of its
own here, reading its environment through env.py.
"""

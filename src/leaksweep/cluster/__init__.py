"""Where a worker runs: the one reader of the Slurm / local environment, preemption, sbatch submission."""

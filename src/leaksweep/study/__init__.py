"""The study stage: an Optuna study over mixture fractions (and hyperparameters), run by workers.

Suggestion and execution are decoupled with ask/tell: a worker asks for a trial, writes its
spec.json, runs it (leaksweep.trial) and tells the objective values. `storage` is the one Optuna
adapter (the only module that imports optuna; add any new Optuna call there); `prepare` makes the
sweep folder and plans the trials; `worker` and `local` run them; `heartbeat` and `reclaim` recover
trials whose worker died; `experiment` drives the experiment modes round by round; `status` and
`dashboard` read the study. Importers name the module: `from leaksweep.study.worker import run_worker`.
"""

"""Experiments room: experiment types as conditions, and the searches that choose which to run.

`conditions` holds what every mode shares (Condition, Run, Builder, Settings, estimates, `drive`,
shared config checks); `static`, `threshold` and `minimal` are the modes; `registry` maps each
`search.mode` to its check, its search and its analysis kinds, and loads sweep files with those
checks. A new mode: one file with its Search, `make(cfg, sources)` and `check(cfg)`, plus one
`registry.register_mode(Mode(...))` entry.
"""

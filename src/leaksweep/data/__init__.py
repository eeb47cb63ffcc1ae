"""Data room: everything about the training data before any model is touched.

`records` reads prompt sets and rollout sources (JSONL, Parquet, saved HF datasets) and aligns them
by prompt_id; `world` generates the built-in miniature ("demo world"); `subsets` turns subset rules
into sets of prompt ids (and their stratified halves); `mixture` compiles a mixture plan into the
training rows of one trial. A new data format goes in `records.read_records`; a new kind of subset
rule in `subsets.compute_subset` (with its config in config.SubsetRule).
"""

"""Traits room: held-out eval prompts + a generation protocol + a judge -> a trait score with an interval.

`judges` holds the Verdict, the built-in rule judges and the registry of judge kinds (a new judge:
one file with a factory and one `judges.register_judge(KIND, factory)` call); `evalset` builds each
trait's eval set (deduplicated against the training prompts); `scoring` judges samples and
computes scores with Wilson or prompt-bootstrap intervals.
"""

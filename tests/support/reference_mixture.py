"""The mixture definition as it was first written, prompt by prompt in plain Python (before the
compile was vectorised). Tests compare the vectorised compile against it, manifest and hash."""

from __future__ import annotations

from leaksweep.data.dataset import uniform
from leaksweep.files import sha256_json

DROPPED = "DROPPED"


def reference_compile(plan, ids: list[str], has, subsets: dict[str, frozenset[str]]) -> tuple[list, list, int, str]:
    """(rows, refill rows, fallbacks, hash) for `plan` over prompts `ids`; `has(source, pid)` says
    whether a source has the prompt; `subsets` maps a subset name to its prompt ids."""
    seed = plan.mixture_seed
    assignment = {pid: plan.base for pid in ids}
    refills = []
    for rule in plan.rules:
        members = sorted(subsets[rule.subset])
        if rule.action == "patch":
            for pid in members:
                if assignment[pid] != DROPPED and uniform(pid, seed, "patch") < rule.fraction:
                    assignment[pid] = rule.source
            continue
        dropped = [pid for pid in members if assignment[pid] != DROPPED and uniform(pid, seed, "drop") < rule.fraction]
        for pid in dropped:
            assignment[pid] = DROPPED
        if rule.refill != "none" and dropped:
            refills.append((rule, len(dropped)))
    refill_rows = []
    for rule, n_dropped in refills:
        pool = sorted(
            (pid for pid, s in assignment.items() if s != DROPPED and pid not in subsets[rule.subset]),
            key=lambda pid: uniform(pid, seed, "refill"),
        )
        refill_rows += [(pool[i % len(pool)], rule.refill) for i in range(n_dropped)]
    fallbacks = 0
    rows = []
    for pid in ids:
        source = assignment[pid]
        if source != DROPPED and not has(source, pid):
            source, fallbacks = plan.base, fallbacks + 1
        rows.append((pid, source))
    refill = []
    for pid, source in refill_rows:
        if not has(source, pid):
            source, fallbacks = plan.base, fallbacks + 1
        refill.append((pid, source))
    return rows, refill, fallbacks, sha256_json({"rows": rows, "refill": refill})

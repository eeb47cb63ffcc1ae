"""W&B Reports: `leaksweep wandb-report`, built with wandb_workspaces (imported on first use only).

A report *spec* is plain data (built by the report stage from a sweep folder):
  {"title": str, "description": str, "blocks": [block, ...]}
  block: {"kind": "h1"|"h2"|"p"|"markdown", "text": str}
       | {"kind": "panels", "name": str, "group": str, "job_type": str, "panels": [panel, ...]}
  panel: {"kind": "line", "title": str, "x": str, "y": [str, ...]}
       | {"kind": "bar", "title": str, "metrics": [str, ...]}
       | {"kind": "scalar", "title": str, "metric": str}
       | {"kind": "table", "table": str}
       | {"kind": "compare"}
"""

from __future__ import annotations

import os
from typing import Any

from leaksweep.config import WandbConfig
from leaksweep.errors import UserError
from leaksweep.tracking.protocol import require_api_key
from leaksweep.tracking.redact import redact
from leaksweep.tracking.wandb_tracker import default_entity


def build_wandb_report(spec: dict, entity: str, project: str) -> Any:
    """The wandb_workspaces Report object for `spec` (no network until `.save()`)."""
    import wandb_workspaces.reports.v2 as wr

    return wr.Report(
        project=project,
        entity=entity,
        title=spec["title"],
        description=spec.get("description", ""),
        blocks=[_block(b, entity, project) for b in spec["blocks"]],
        width="fluid",
    )


def _block(b: dict, entity: str, project: str) -> Any:
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    kind = b["kind"]
    if kind in ("h1", "h2", "p"):
        return {"h1": wr.H1, "h2": wr.H2, "p": wr.P}[kind](b["text"])
    if kind == "markdown":
        return wr.MarkdownBlock(b["text"])
    if kind == "panels":
        if "'" in b["group"] or "'" in b["job_type"]:  # sweep names are letters, digits, - _ . only
            raise ValueError(f"report spec: a quote in group {b['group']!r} would break the run filter")
        runs_of_stage = expr.And(expr.Metric("Group") == b["group"], expr.Metric("JobType") == b["job_type"])
        runset = wr.Runset(entity=entity, project=project, name=b["name"], filters=runs_of_stage)
        return wr.PanelGrid(runsets=[runset], panels=[_panel(p) for p in b["panels"]])
    raise ValueError(f"report spec: unknown block kind {kind!r}")


def _panel(p: dict) -> Any:
    import wandb_workspaces.reports.v2 as wr

    kind = p["kind"]
    if kind == "line":
        return wr.LinePlot(title=p["title"], x=p["x"], y=list(p["y"]))
    if kind == "bar":
        return wr.BarPlot(title=p["title"], metrics=[wr.SummaryMetric(m) for m in p["metrics"]], orientation="v")
    if kind == "scalar":
        return wr.ScalarChart(title=p["title"], metric=wr.SummaryMetric(p["metric"]))
    if kind == "table":
        return wr.WeavePanelSummaryTable(table_name=p["table"])
    if kind == "compare":
        return wr.RunComparer(diff_only="split")
    raise ValueError(f"report spec: unknown panel kind {kind!r}")


def create_wandb_report(spec: dict, cfg: WandbConfig) -> str:
    """Save `spec` as a W&B Report in the sweep's project and return its URL.

    Refuses (UserError) without an API key or when W&B is switched off or offline, saying what
    to do; the runs must be uploaded first (`leaksweep sync`) for the report to show anything.
    """
    action = "leaksweep wandb-report"
    configured_off = cfg.mode in ("offline", "disabled")
    if configured_off or os.environ.get("WANDB_MODE", "").strip().lower() in ("offline", "disabled"):
        why = f"tracking.wandb.mode is {cfg.mode!r}" if configured_off else "WANDB_MODE is offline/disabled"
        raise UserError(
            f"{action}: W&B Reports live on the W&B server, but {why}; unset it on a machine with "
            "network access, run `leaksweep sync SWEEP_DIR` to upload the runs, then rerun"
        )
    require_api_key(action)
    try:
        report = build_wandb_report(spec, cfg.entity or default_entity(), cfg.project)
        report.save()
        return str(report.url)
    except UserError:
        raise
    except Exception as exc:  # no route to the server, an expired key, a missing project
        message = redact({"m": f"{type(exc).__name__}: {exc}"})["m"]
        raise UserError(
            f"{action}: W&B refused or could not be reached ({message}); check the network and the "
            "key (`wandb login --relogin`), and that the runs were uploaded (`leaksweep sync`)"
        ) from exc

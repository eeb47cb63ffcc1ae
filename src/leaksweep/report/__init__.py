"""Report stage: one self-contained HTML page that answers a sweep's question from its folder alone,
and the study's summary for W&B.

view.py reads the sweep folder (through leaksweep.layout) into a SweepView; fmt.py formats numbers and
escapes text; svg.py is a chart kit that knows nothing of leaksweep, charts.py the leaksweep charts on
it; prose.py writes the answer paragraph (an experiment mode's answer: prose.ANSWERS); sections.py the
sections every sweep gets; analysis.py analysis.json's sections by kind (a new kind: one renderer plus
one `@kind(...)` entry; unknown kinds show as plain tables); page.py puts the page together with the
CSS and scripts of assets/ inlined (write_report). wandb_summary.py builds the study's W&B summary
run and W&B Report spec (its tables by the same analysis kinds: wandb_summary.TABLES).
"""

"""Reports: the paper's tables and figures, built only from run records (`lora-repro report`).

cells.py    the one grouping of records into cells, and the one cell format (`87.5±.3`)
layout.py   Report/Section, task order and names, shared footnotes
params.py   Table 2's parameter column, computed on the meta device and checked against the paper
table2.py   Table 2 (and the `mini` layout), with the paper's cells and the differences
sweeps.py   Tables 5 and 6 (LoRA weight sets x budget, x rank)
figures.py  average score vs. parameters, score vs. rank
render.py   Markdown, LaTeX, CSV and PNG files, written atomically
reports.py  the reports the CLI offers; cli.py the command itself
"""

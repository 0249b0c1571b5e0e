"""A report as files: Markdown, LaTeX, a tidy CSV and PNG figures, each naming the command that made it.

Every file is written to a temporary name and renamed into place (`atomic_write`), so a report that
fails half way never leaves a half-written table behind.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lora_repro.records.io import atomic_write
from lora_repro.report.layout import Report, Section

__all__ = ["figure_png", "to_latex", "to_markdown", "write_report"]

# LaTeX for TeX's special characters and the symbols the tables use.
LATEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
         "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "±": r"$\pm$",
         "α": r"$\alpha$", "—": "---", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "·": r"$\cdot$",
         "`": ""}  # Markdown's code quotes


def produced_by(command: str) -> str:
    """The line every output file starts with."""
    return f"Produced by: {command}"


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of display strings (no extra dependency)."""
    def row(cells: list[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"

    lines = [row(list(table.columns)), "|" + "---|" * len(table.columns)]
    return "\n".join(lines + [row(list(r)) for r in table.itertuples(index=False)])


def to_markdown(report: Report, command: str) -> str:
    """The whole report as Markdown: title, the producing command, then each section."""
    parts = [f"# {report.title}", produced_by(f"`{command}`")]
    for section in report.sections:
        parts.append(f"## {section.title}")
        if section.table is not None:
            parts.append(markdown_table(section.table))
        parts += section.notes
    return "\n\n".join(parts) + "\n"


def latex_text(text: object) -> str:
    """Escape one cell for LaTeX."""
    return "".join(LATEX.get(ch, ch) for ch in str(text))


def latex_section(section: Section) -> list[str]:
    """One section as a `table` float with its notes under the tabular."""
    lines = [f"% {section.title}"]
    if section.table is not None:
        table, align = section.table, "l" + "c" * (len(section.table.columns) - 1)
        lines += [r"\begin{table}[ht]", r"\centering\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                  " & ".join(map(latex_text, table.columns)) + r" \\", r"\midrule"]
        lines += [" & ".join(map(latex_text, row)) + r" \\" for row in table.itertuples(index=False)]
        lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_text(section.title)}}}",
                  r"\end{table}"]
    lines += [rf"\noindent{{\footnotesize {latex_text(note)}}}\par" for note in section.notes]
    return lines


def to_latex(report: Report, command: str) -> str:
    """The report as a LaTeX fragment of booktabs tables, to `input` into a document."""
    lines = [f"% {produced_by(command)}", f"% {report.title}", "% needs \\usepackage{booktabs}"]
    for section in report.sections:
        lines += latex_section(section)
    return "\n".join(lines) + "\n"


def figure_png(figure: Figure, command: str) -> bytes:
    """The figure as PNG bytes, with the producing command in its metadata."""
    buffer = io.BytesIO()
    footer = figure.text(0.01, 0.0, produced_by(command), fontsize=6, color="0.4", va="top")
    try:  # the footer is for the file only: the same figure may be shown again (the notebook)
        figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight",
                       metadata={"Description": produced_by(command)})
    finally:
        footer.remove()
    return buffer.getvalue()


# 12 significant digits: the numbers themselves, without the last bits that another BLAS or CPU rounds otherwise,
# so a report rebuilt on another machine is the same file.
CSV_FLOAT = "%.12g"


def write_report(report: Report, out: Path, command: str) -> list[Path]:
    """Write `<name>.md`, `.tex`, `.csv` and one PNG per figure into `out`.

    Returns:
        The files written.
    """
    texts = {f"{report.name}.md": to_markdown(report, command),
             f"{report.name}.tex": to_latex(report, command),
             f"{report.name}.csv": f"# {produced_by(command)}\n" + report.tidy.to_csv(index=False,
                                                                                        float_format=CSV_FLOAT)}
    written = []
    for name, text in texts.items():
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(out / name)
    for stem, figure in report.figures.items():
        png = figure_png(figure, command)
        atomic_write(out / f"{stem}.png", lambda tmp, png=png: tmp.write_bytes(png))
        written.append(out / f"{stem}.png")
    for companion in report.companions:
        written += write_report(companion, out, command)
    return written

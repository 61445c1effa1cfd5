"""Render the Northwind Robotics 2025 annual report from Markdown to PDF.

Run from the repository root:

    .venv/bin/python examples/ceo-report-qa/make_report_pdf.py

Reads ``report_source.md`` next to this script and writes
``docs/northwind-annual-report-2025.pdf``. Only fpdf2's core fonts are used, so the
source must stay within latin-1 (straight quotes, plain hyphens).

The Markdown subset understood here is deliberately small:

* the first ``# `` heading and the lines under it form the cover page;
* every later ``# `` heading starts a new page and a new entry in the contents;
* ``## `` headings, ``- `` bullets, ``**bold**``, paragraphs (blank-line separated;
  a trailing ``\\`` keeps a line break) and pipe tables (``| a | b |`` rows with a
  ``|---|`` separator row).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "report_source.md"
OUTPUT = HERE / "docs" / "northwind-annual-report-2025.pdf"

TITLE = "Northwind Robotics - 2025 Annual Report"
NAVY = (20, 45, 80)
TEAL = (0, 110, 120)
GREY = (110, 110, 110)


class ReportPDF(FPDF):
    def header(self) -> None:
        if self.page_no() <= 1:
            return
        self.set_font("Helvetica", "", 8)
        self.set_text_color(*GREY)
        self.cell(0, 6, TITLE, align="R")
        self.ln(10)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        if self.page_no() <= 1:
            return
        self.set_y(-15)
        self.set_draw_color(*GREY)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_font("Helvetica", "", 8)
        self.set_text_color(*GREY)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def parse_blocks(text: str) -> list[tuple[str, object]]:
    """Split the Markdown source into (kind, payload) blocks."""
    blocks: list[tuple[str, object]] = []
    para: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if para:
            # A trailing backslash is a hard line break, as in CommonMark.
            text = " ".join(s.strip() for s in para).replace("\\ ", "\n").rstrip("\\")
            blocks.append(("p", text))
            para.clear()
        if table:
            blocks.append(("table", [row[:] for row in table]))
            table.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush()
        elif line.startswith("# "):
            flush()
            blocks.append(("h1", line[2:].strip()))
        elif line.startswith("## "):
            flush()
            blocks.append(("h2", line[3:].strip()))
        elif line.startswith("- "):
            flush()
            blocks.append(("li", line[2:].strip()))
        elif line.startswith("|"):
            if para:
                flush()
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
        else:
            para.append(line)
    flush()
    return blocks


def render_toc(pdf: FPDF, outline) -> None:
    pdf.set_font("Helvetica", "B", 20)
    pdf.set_text_color(*NAVY)
    pdf.cell(0, 14, "Contents", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 12)
    pdf.set_text_color(0, 0, 0)
    for section in outline:
        if section.level != 0:
            continue
        pdf.cell(150, 9, section.name)
        pdf.cell(0, 9, str(section.page_number), align="R", new_x="LMARGIN", new_y="NEXT")


def render_cover(pdf: ReportPDF, title: str, lines: list[str]) -> None:
    pdf.add_page()
    pdf.set_fill_color(*NAVY)
    pdf.rect(0, 0, pdf.w, 110, style="F")
    pdf.set_xy(pdf.l_margin, 45)
    pdf.set_text_color(255, 255, 255)
    pdf.set_font("Helvetica", "B", 30)
    pdf.multi_cell(0, 13, title)
    pdf.set_text_color(0, 0, 0)
    pdf.set_y(130)
    if lines:
        pdf.set_font("Helvetica", "I", 15)
        pdf.set_text_color(*TEAL)
        pdf.multi_cell(0, 8, lines[0])
        pdf.ln(12)
        pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 11)
    for line in lines[1:]:
        pdf.multi_cell(0, 6, line)
        pdf.ln(3)


def render_table(pdf: ReportPDF, rows: list[list[str]]) -> None:
    pdf.set_font("Helvetica", "", 9.5)
    pdf.set_draw_color(180, 180, 180)
    heading = FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=TEAL)
    with pdf.table(
        headings_style=heading,
        line_height=6.5,
        text_align="LEFT",
        first_row_as_headings=True,
    ) as table:
        for row in rows:
            table.row(row)
    pdf.ln(4)


def build(source: Path, output: Path) -> int:
    blocks = parse_blocks(source.read_text(encoding="latin-1"))
    pdf = ReportPDF(format="A4")
    pdf.set_title(TITLE)
    pdf.set_author("Northwind Robotics, Inc.")
    # A fixed date keeps the output byte-identical between runs (the file id is a content hash).
    pdf.set_creation_date(datetime(2026, 3, 2, tzinfo=UTC))
    pdf.set_margins(22, 18, 22)
    pdf.set_auto_page_break(auto=True, margin=22)

    # Cover: the first h1 and everything until the next h1.
    assert blocks and blocks[0][0] == "h1", "source must start with a '# ' title"
    cover_end = next((i for i, b in enumerate(blocks[1:], 1) if b[0] == "h1"), len(blocks))
    raw_cover = source.read_text(encoding="latin-1").split("\n# ", 1)[0].splitlines()[1:]
    cover_lines = [ln.strip() for ln in raw_cover if ln.strip()]
    render_cover(pdf, str(blocks[0][1]), cover_lines)

    pdf.add_page()
    pdf.insert_toc_placeholder(render_toc, pages=1)  # also breaks to a fresh page
    fresh_page = True

    for kind, payload in blocks[cover_end:]:
        if kind == "h1":
            if not fresh_page:
                pdf.add_page()
            fresh_page = False
            pdf.start_section(str(payload), level=0)
            pdf.set_font("Helvetica", "B", 22)
            pdf.set_text_color(*NAVY)
            pdf.multi_cell(0, 11, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.set_draw_color(*TEAL)
            pdf.set_line_width(0.8)
            pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.l_margin + 40, pdf.get_y() + 1)
            pdf.set_line_width(0.2)
            pdf.ln(7)
            pdf.set_text_color(0, 0, 0)
        elif kind == "h2":
            if pdf.get_y() > pdf.h - 50:  # keep a heading with its first lines
                pdf.add_page()
            pdf.ln(2)
            pdf.start_section(str(payload), level=1)
            pdf.set_font("Helvetica", "B", 13)
            pdf.set_text_color(*TEAL)
            pdf.multi_cell(0, 7, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
            pdf.set_text_color(0, 0, 0)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(0, 5.2, str(payload), markdown=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        elif kind == "li":
            pdf.set_font("Helvetica", "", 10)
            if pdf.will_page_break(5.2):  # draw the bullet on the page its text lands on
                pdf.add_page()
            y = pdf.get_y()
            pdf.set_fill_color(*TEAL)
            pdf.rect(pdf.l_margin + 2, y + 2, 1.6, 1.6, style="F")  # drawn, so not in the text
            pdf.set_x(pdf.l_margin + 7)
            pdf.multi_cell(0, 5.2, str(payload), markdown=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.2)
        elif kind == "table":
            render_table(pdf, payload)  # type: ignore[arg-type]

    output.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(output))
    return pdf.pages_count


def main() -> None:
    pages = build(SOURCE, OUTPUT)
    print(f"wrote {OUTPUT} ({pages} pages)")


if __name__ == "__main__":
    main()

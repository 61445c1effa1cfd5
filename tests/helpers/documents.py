"""Small documents written by the tests themselves (PDF pages via fpdf2)."""

from __future__ import annotations

from pathlib import Path


def write_pdf(path: Path, pages: list[str], pdf=None) -> Path:
    """A real multi-page PDF whose page i (1-based) holds pages[i-1] (drawn on `pdf`, an
    fpdf2 document, e.g. one with header/footer hooks; default a plain one)."""
    from fpdf import FPDF

    pdf = pdf or FPDF()
    pdf.set_auto_page_break(False)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


PARAGRAPHS = [
    "The Atlas X2 robot arm lifts 25 kilograms and reaches 1.8 metres.",
    "Our refund window is 30 days from delivery; contact support to start a return.",
    "The warranty covers motors and gearboxes for 24 months after purchase.",
    "Standard shipping takes five business days and costs 4.99 dollars per order.",
    "The helpdesk is open from 8 am to 6 pm, Monday to Friday, Central European Time.",
    "Firmware 3.2 added collision detection and a quieter idle mode for the gripper.",
]


def write_corpus(folder: Path, n_files: int, paragraphs_per_file: int = 6) -> list[Path]:
    """Markdown files with distinct, numbered content (several chunks each at small sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n_files):
        body = [f"# Document {i}\n"]
        for j in range(paragraphs_per_file):
            base = PARAGRAPHS[(i + j) % len(PARAGRAPHS)]
            body.append(f"Section {i}.{j}. {base} Reference code ref{i:03d}x{j:02d}.\n")
        path = folder / f"doc-{i:03d}.md"
        path.write_text("\n".join(body), encoding="utf-8")
        files.append(path)
    return files


BREWBIRD_DOCS = {
    "refunds.md": "# Refunds\n\nBrewBird accepts returns within 45 days of delivery. "
    "Refunds are paid within 5 business days to the original card.",
    "warranty.md": "# Warranty\n\nThe BB-100 carries a 2-year warranty; the BB-200 Pro carries "
    "a 3-year warranty covering the boiler and pump.",
    "contact.md": "# Contact\n\nCall 555-0142 between 8 am and 6 pm, Monday to Friday.",
    "descaling.md": "# Descaling\n\nDescale the BB-100 every 8 weeks with BrewBird citric "
    "descaler; the BB-200 Pro reminds you on its display.",
}
"""BrewBird's help pages, the knowledge base of the app tests (each test picks its pages)."""


def knowledge_base_of(catalog, name: str, folder: Path, files: dict[str, str]):
    """A knowledge base `name` made in `catalog` from `files` (file name -> text), written into
    `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text, encoding="utf-8")
    kb = catalog.create(name)
    kb.ingest([folder], progress=False)
    return kb


def write_brewbird_docs(folder: Path, *names: str) -> Path:
    """The named BREWBIRD_DOCS pages written into `folder` (created); the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(BREWBIRD_DOCS[name], encoding="utf-8")
    return folder


def write_paged_pdf(
    path: Path, pages: list[str], header: str, footer: str = "Page {n} of {total}"
) -> Path:
    """A real PDF laid out like a report: from page 2 on, `header` at the top of each page and
    `footer` (its {n} and {total} filled in) at the bottom, drawn by fpdf2's header/footer hooks
    as report generators do; page i (1-based) holds pages[i-1]."""
    from fpdf import FPDF

    class Paged(FPDF):
        def header(self) -> None:
            if self.page_no() > 1:
                self.set_font("Helvetica", size=8)
                self.cell(0, 6, header, align="R")
                self.ln(10)

        def footer(self) -> None:
            if self.page_no() > 1:
                self.set_y(-15)
                self.set_font("Helvetica", size=8)
                self.cell(0, 8, footer.format(n=self.page_no(), total=len(pages)), align="C")

    return write_pdf(path, pages, Paged())

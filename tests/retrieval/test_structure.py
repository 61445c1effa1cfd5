"""Structure-aware chunks (paragraphs, headings joined to their text), tables kept as rows with
their headers in every loader, and small-to-big passages at query time (issue 14)."""

from __future__ import annotations

import json

import pytest

from retrieval import ChunkingConfig, KnowledgeBaseSettings, QueryOptions
from retrieval.chunking import chunk_document
from retrieval.config import EmbedderConfig
from retrieval.embedders import load_embedder
from retrieval.loaders import Page, load_document
from tests.helpers.documents import PARAGRAPHS, write_pdf

REPORT = """# Annual report

## Cash

Cash was $138.9 million at year end. We have no debt.

| Item | 2019 | 2020 |
|---|---|---|
| Revenue | $10.0 million | $12.5 million |
| Depreciation | $1.1 million | $1.3 million |

## People

We employed 1,864 people, up from 1,612. Turnover was 7.9%.
"""


@pytest.fixture(scope="module")
def tokenize():
    return load_embedder(EmbedderConfig()).tokenize


def test_paragraphs_are_chunks_and_headings_join_their_text(tmp_path, tokenize):
    path = tmp_path / "report.md"
    path.write_text(REPORT)
    pages = load_document(path)
    chunks = chunk_document(
        pages, ChunkingConfig(chunk_size=64, chunk_overlap=8, boundaries="structure"), tokenize
    )
    texts = [c.text for c in chunks]
    assert texts[0] == (
        "# Annual report\n\n## Cash\n\nCash was $138.9 million at year end. We have no debt."
    )
    assert "Item: Depreciation | 2019: $1.1 million | 2020: $1.3 million" in texts
    assert texts[-1].startswith("## People\n\nWe employed 1,864 people")
    for chunk in chunks:  # spans point at the chunk's own text in the page
        assert pages[0].text[chunk.start_char : chunk.end_char] == chunk.text


def test_long_paragraphs_are_cut_at_the_size_and_sentences_mode_packs(tokenize):
    long = " ".join(PARAGRAPHS * 4)
    text = (
        f"Short opening paragraph that says one thing only.\n\n{long}\n\nA closing paragraph here."
    )
    config = ChunkingConfig(chunk_size=48, chunk_overlap=8, boundaries="structure")
    chunks = chunk_document([Page(text=text, page=2)], config, tokenize)
    assert chunks[0].text == "Short opening paragraph that says one thing only."
    assert chunks[-1].text == "A closing paragraph here."
    assert len(chunks) > 4
    for chunk in chunks:
        assert text[chunk.start_char : chunk.end_char] == chunk.text
        assert len(tokenize(chunk.text)) <= 48
        assert chunk.page == 2
    packed = chunk_document(
        [Page(text=text)], config.model_copy(update={"boundaries": "sentences"}), tokenize
    )
    assert packed[0].text.startswith("Short opening paragraph that says one thing only.\n\nThe")


def test_html_tables_are_rows_with_their_headers(tmp_path):
    path = tmp_path / "t.html"
    path.write_text(
        "<html><body><h2>Depreciation</h2><p>By year, in <b>millions</b>.</p><table>"
        "<tr><th>Asset</th><th>2019</th><th>2020</th></tr>"
        "<tr><td>Buildings</td><td>4.2</td><td>4.4</td></tr>"
        "<tr><td>Machinery</td><td>7.5</td><td>8.1</td></tr></table></body></html>"
    )
    text = load_document(path)[0].text
    assert text.split("\n\n") == [
        "Depreciation",
        "By year, in millions.",
        "Asset: Buildings | 2019: 4.2 | 2020: 4.4",
        "Asset: Machinery | 2019: 7.5 | 2020: 8.1",
    ]


def test_pdf_tables_are_rows_with_their_headers_and_paragraphs_survive(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Depreciation by year. " * 6)
    pdf.ln(12)
    with pdf.table(first_row_as_headings=True) as table:
        for row in (("Asset", "2019", "2020"), ("Buildings", "$4.2m", "$4.4m")):
            cells = table.row()
            for cell in row:
                cells.cell(cell)
    pdf.ln(12)
    pdf.multi_cell(0, 6, "A second paragraph after the table.")
    path = tmp_path / "t.pdf"
    pdf.output(str(path))
    pages = load_document(path)
    paragraphs = pages[0].text.split("\n\n")
    assert "Asset: Buildings | 2019: $4.2m | 2020: $4.4m" in paragraphs
    assert paragraphs[-1] == "A second paragraph after the table."
    assert paragraphs[0].startswith("Depreciation by year.")


def small_kb(catalog, tmp_path, name="structure-kb"):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    body = "\n\n".join(f"Paragraph {i}. {p}" for i, p in enumerate(PARAGRAPHS))
    (docs / "facts.md").write_text(body + "\n")
    write_pdf(docs / "two.pdf", [PARAGRAPHS[0], PARAGRAPHS[1]])
    settings = KnowledgeBaseSettings(
        chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8, boundaries="structure")
    )
    kb = catalog.create(name, settings)
    kb.ingest([docs], progress=False)
    return kb, body


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_passages_widen_with_neighbours_within_the_budget(catalog, tmp_path, mode):
    kb, body = small_kb(catalog, tmp_path)
    question = "How long does standard shipping take?"
    facts = {"file_name": "facts.md"}
    alone = kb.query(question, QueryOptions(mode=mode, top_k=1, context_chars=0, filters=facts))
    assert alone[0].text.startswith("Paragraph 3. Standard shipping")
    wide = kb.query(
        question,
        QueryOptions(mode=mode, top_k=1, context_chars=300, filters=facts),
    )[0]
    assert wide.id == alone[0].id and alone[0].text in wide.text
    assert len(wide.text) <= 300 and len(wide.text) > len(alone[0].text) + 60
    # the passage is the document's own text between its citation's offsets
    assert body[wide.citation.start_char : wide.citation.end_char] == wide.text
    assert wide.citation.start_char < alone[0].citation.start_char


def test_in_context_shows_every_chunk_as_a_query_with_context_chars_would(catalog, tmp_path):
    kb, body = small_kb(catalog, tmp_path)
    chunks = kb.chunks("facts.md")
    assert len(chunks) >= 3
    wide = kb.in_context(chunks, 300)
    assert [c.id for c in wide] == [c.id for c in chunks]  # none dropped as already shown
    for chunk, shown in zip(chunks, wide, strict=True):
        assert chunk.text in shown.text and len(shown.text) <= 300
        assert body[shown.citation.start_char : shown.citation.end_char] == shown.text
    middle = len(chunks) // 2
    question = chunks[middle].text
    [served] = kb.query(
        question, QueryOptions(top_k=1, context_chars=300, filters={"file_name": "facts.md"})
    )
    assert served.id == chunks[middle].id and served.text == wide[middle].text
    assert any(len(shown.text) > len(chunk.text) for chunk, shown in zip(chunks, wide, strict=True))
    assert kb.in_context(chunks, 0) == chunks


def test_widened_passages_do_not_repeat_and_stay_on_their_page(catalog, tmp_path):
    kb, body = small_kb(catalog, tmp_path)
    hits = kb.query(
        "warranty refund shipping helpdesk",
        QueryOptions(mode="hybrid", top_k=6, context_chars=5000, filters={"file_name": "facts.md"}),
    )
    assert len(hits) == 1  # the first passage takes the whole file; the rest are not repeated
    assert hits[0].text == body
    pdf_hits = kb.query(
        "robot arm kilograms",
        QueryOptions(top_k=1, context_chars=5000, filters={"file_name": "two.pdf"}),
    )
    assert pdf_hits[0].citation.page == 1
    assert "refund" not in pdf_hits[0].text  # page 2's text is not pulled onto page 1


def test_knowledge_bases_recorded_before_boundaries_keep_sentences(catalog, tmp_path):
    kb, _ = small_kb(catalog, tmp_path, "old-style-kb")
    meta = dict(kb.collection.metadata)
    recorded = json.loads(meta["settings"])
    del recorded["chunking"]["boundaries"]
    meta["settings"] = json.dumps(recorded)
    kb.collection.modify(metadata=meta)
    assert catalog.open("old-style-kb").settings.chunking.boundaries == "sentences"
    structure = KnowledgeBaseSettings(chunking=ChunkingConfig(boundaries="structure"))
    catalog.create("new-kb", structure)
    assert catalog.open("new-kb").settings.chunking.boundaries == "structure"  # recorded, kept


LONG = (  # one paragraph of about 120 tokens: cut into several 32-token chunks
    "The Tern robot moves totes between racks and packing stations. It carries 600 kilograms "
    "and drives at two metres per second. Its lidar sees people at twelve metres and slows "
    "the robot long before it comes near them. The battery lasts ten hours and charges in "
    "forty minutes at any dock. A fleet of two hundred robots is run by one Compass server. "
    "Customers rent the robots by the month or buy them outright with a service plan."
)
BEFORE = "Northwind also sells robot arms for machine tending and palletizing."
AFTER = "Spare parts ship within two days from Grand Rapids or Brno."


def whole_paragraph_kb(catalog, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tern.md").write_text(f"{BEFORE}\n\n{LONG}\n\n{AFTER}\n")
    settings = KnowledgeBaseSettings(
        chunking=ChunkingConfig(chunk_size=32, chunk_overlap=8, boundaries="structure")
    )
    kb = catalog.create("paragraph-kb", settings)
    kb.ingest([docs], progress=False)
    assert kb.collection.count() >= 5  # the long paragraph is several chunks
    return kb


def test_widening_by_paragraph_shows_the_hits_whole_paragraph_then_whole_neighbours(
    catalog, tmp_path
):
    from retrieval.search import widen

    kb = whole_paragraph_kb(catalog, tmp_path)
    hit = kb.query("How long does the Tern battery last?", QueryOptions(top_k=1, context_chars=0))[
        0
    ]
    assert "ten hours" in hit.text and len(hit.text) < len(LONG) / 2

    def widened(budget: int, unit: str = "paragraph"):
        return widen(kb.collection, [hit], budget, unit=unit)[0]  # type: ignore[arg-type]

    # a budget below the paragraph's length: the whole paragraph all the same, nothing else
    assert widened(100).text == LONG
    # room for one neighbouring paragraph: the next one, whole
    assert widened(len(LONG) + len(AFTER) + 10).text == f"{LONG}\n\n{AFTER}"
    # room for both: the previous one too; the citation spans the passage in the file
    both = widened(1000)
    assert both.text == f"{BEFORE}\n\n{LONG}\n\n{AFTER}"
    assert (both.citation.start_char, both.citation.end_char) == (0, len(both.text))
    # by chunk (the default, by measurement), the passage may stop mid-paragraph
    by_chunk = widened(200, unit="chunk")
    assert hit.text in by_chunk.text and len(by_chunk.text) <= 200 and by_chunk.text in LONG
    assert (
        kb.query("How long does the Tern battery last?", QueryOptions(top_k=1, context_chars=200))[
            0
        ].text
        == by_chunk.text
    )

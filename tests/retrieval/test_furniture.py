"""Running headers and footers are dropped at load time; lines that recur only on a few pages,
or inside a page's body, are content and stay (retrieval/loaders/furniture.py)."""

from __future__ import annotations

from retrieval import ChunkingConfig, KnowledgeBaseSettings, QueryOptions
from retrieval.loaders import Page, load_document
from retrieval.loaders.furniture import strip_running_lines
from tests.conftest import EXAMPLES
from tests.helpers.documents import write_paged_pdf, write_pdf

HEADER = "Acme Logistics - 2025 Annual Report"
BODY = [  # as in the report that showed the problem: the revenue sentence sits mid-page and
    # does not say the year; the outlook starts a page, where the header joins its chunk
    "Acme Logistics 2025\nAnnual Report\n\nPublished March 2026",  # the cover: no header
    "Highlights\n\nWe opened two warehouses and hired 80 drivers.\n\n"
    "Total revenue for the year was $88.4 million, up 12% from the prior year.\n\n"
    "Services revenue grew faster than hardware revenue.",
    "For 2026 we expect total revenue between $95 million and $99 million.\n\n"
    "Guidance assumes stable freight costs.",
    "Freight costs and tariffs could lower margins.\n\nCurrency moves affect reported revenue.",
    "The board has seven members, six of them independent.\n\nThe audit committee meets quarterly.",
    "We employed 640 people at year end.\n\nVoluntary turnover was 6.1%.",
]


def test_running_header_and_page_footer_are_stripped_from_a_report_pdf(tmp_path):
    pages = load_document(write_paged_pdf(tmp_path / "report.pdf", BODY, HEADER))
    assert [p.page for p in pages] == [1, 2, 3, 4, 5, 6]
    for page in pages:
        assert HEADER not in page.text
        assert "Page " not in page.text  # "Page 3 of 6": numbers differ, the line recurs
    assert pages[0].text.startswith("Acme Logistics 2025")  # the cover is untouched
    assert pages[1].text.startswith("Highlights\n\nWe opened two warehouses")
    assert pages[2].text == BODY[2]


def test_lines_repeated_on_a_few_pages_or_inside_the_body_stay(tmp_path):
    notice = "Forward-looking statements are subject to risks."
    titles = ["Revenue", "Margins", "Cash", "Outlook", "Risks", "People", "Board", "Audit"]
    body = [f"{t}\n\nWhat {t.lower()} did in the year.\n\nMore on it." for t in titles]
    body[2] = notice + "\n\n" + body[2]  # at the top of 2 of 8 pages: real content there
    body[5] = notice + "\n\n" + body[5]
    body = [  # the header's words in the body of every page: not in its first or last lines
        f"{text}\n\nMiddle {i}.\n\n{HEADER} is filed with the SEC.\n\nAfter.\n\nEnd {i}."
        for i, text in enumerate(body)
    ]
    pages = load_document(write_pdf(tmp_path / "notes.pdf", body))
    assert [p.text.startswith(notice) for p in pages].count(True) == 2
    assert all(f"{HEADER} is filed with the SEC." in p.text for p in pages)
    assert [p.text.removeprefix(notice + "\n\n").split("\n")[0] for p in pages] == titles


def test_too_few_pages_to_call_a_line_running():
    pages = [Page(f"{HEADER}\n\nBody {i}.", page=i) for i in (1, 2)]
    assert strip_running_lines(pages) == pages


def test_alternating_left_and_right_headers_are_both_running():
    left, right = "Acme Logistics", "Annual Report 2025"
    bodies = [" ".join(BODY[i % len(BODY)].split("\n")[-1:] * (i + 1)) for i in range(8)]
    bodies = [f"{b}\n\nNote {chr(65 + i)}: see the tables." for i, b in enumerate(bodies)]
    pages = [
        Page(f"{left if i % 2 else right}\n\n{body}\n\n{i + 1}", page=i + 1)
        for i, body in enumerate(bodies)
    ]
    assert [p.text for p in strip_running_lines(pages)] == bodies


def test_the_report_pdf_answers_its_revenue_question_with_small_chunks(catalog):
    """The regression that kept small chunks from being the default: the example report's
    running header ("Northwind Robotics - 2025 Annual Report") joined every small chunk that
    starts a page, and "total revenue in 2025" ranked the 2026 outlook above the figure."""
    settings = KnowledgeBaseSettings(
        chunking=ChunkingConfig(chunk_size=64, chunk_overlap=16, boundaries="structure")
    )
    kb = catalog.create("northwind-small", settings)
    kb.ingest([EXAMPLES / "ceo-report-qa" / "docs"], progress=False)
    chunks = kb.collection.get(include=["documents"])["documents"]
    assert not [c for c in chunks if "2025 Annual Report" in c or "of 18" in c]
    question = "What was Northwind's total revenue in 2025?"
    hits = kb.query(question, QueryOptions(mode="hybrid", top_k=2, context_chars=400))  # as the app
    assert "412.6" in hits[0].text, [h.text for h in hits]


def test_the_stripped_header_and_footer_are_kept_as_chunk_metadata_not_as_words(catalog, tmp_path):
    from retrieval.keyword_index import OPEN

    header = "Zephyrine Holdings - Quarterly Digest"  # words that occur nowhere else
    docs = tmp_path / "docs"
    docs.mkdir()
    write_paged_pdf(docs / "digest.pdf", BODY, header, footer="Folio {n} of {total}")
    pages = load_document(docs / "digest.pdf")
    assert [(p.running_header, p.running_footer) for p in pages[1:3]] == [
        (header, "Folio 2 of 6"),
        (header, "Folio 3 of 6"),
    ]
    assert (pages[0].running_header, pages[0].running_footer) == ("", "")  # the cover has none
    kb = catalog.create("digest-kb")
    kb.ingest([docs], progress=False)
    stored = kb.collection.get(include=["documents", "metadatas"])
    by_page: dict[int, set] = {}
    for text, meta in zip(stored["documents"], stored["metadatas"], strict=True):
        assert "Zephyrine" not in text and "Folio" not in text
        by_page.setdefault(meta["page"], set()).add(
            (meta.get("running_header"), meta.get("running_footer"))
        )
    assert by_page[1] == {(None, None)}
    assert by_page[4] == {(header, "Folio 4 of 6")}
    hits = kb.query("What was voluntary turnover?", QueryOptions(mode="hybrid", top_k=1))
    assert hits[0].citation.page == 6 and hits[0].metadata["running_footer"] == "Folio 6 of 6"
    keyword = OPEN.get(kb.collection, kb.keyword_folder)
    keyword.sync(kb._revision())
    assert keyword.search("Zephyrine Folio", 10, {}) == []  # metadata is not searched
    assert keyword.search("employed turnover", 10, {})  # the body is

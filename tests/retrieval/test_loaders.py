from __future__ import annotations

import pytest

from retrieval.errors import DocumentLoadError
from retrieval.loaders import load_document
from tests.helpers.documents import write_pdf


def test_text_and_markdown(tmp_path):
    (tmp_path / "a.txt").write_text("plain words", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nbody", encoding="utf-8")
    assert load_document(tmp_path / "a.txt")[0].text == "plain words"
    pages = load_document(tmp_path / "b.md")
    assert pages[0].text.startswith("# Title") and pages[0].page is None


def test_html_keeps_visible_text_only(tmp_path):
    path = tmp_path / "p.html"
    path.write_text(
        "<html><head><style>.x{color:red}</style><script>var secret=1;</script></head>"
        "<body><h1>Warranty</h1><p>Lasts <b>24</b> months.</p><ul><li>motors</li></ul></body></html>",
        encoding="utf-8",
    )
    text = load_document(path)[0].text
    assert "Warranty" in text and "24" in text and "motors" in text
    assert "secret" not in text and "color" not in text


def test_pdf_keeps_page_numbers(tmp_path):
    path = write_pdf(tmp_path / "r.pdf", ["First page about apples.", "Second page about pears."])
    pages = load_document(path)
    assert [p.page for p in pages] == [1, 2]
    assert "apples" in pages[0].text and "pears" in pages[1].text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("junk.txt", b"\x00\x01\x02binary", "binary data"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("empty.md", b"   \n", "no extractable text"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "cannot parse"),
        ("fake.pdf", b"hello, not a pdf", "not a PDF"),
        ("image.png", b"\x89PNG", "unsupported file type"),
    ],
)
def test_bad_documents_raise_one_clear_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentLoadError) as info:
        load_document(path)
    message = str(info.value)
    assert name in message and reason in message
    assert "\n" not in message


def test_truncated_real_pdf_is_reported(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", ["page one text", "page two text"])
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(DocumentLoadError, match=r"cut\.pdf"):
        load_document(cut)

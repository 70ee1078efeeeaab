"""The prior reports panel: the reports the last answer retrieved, with the sentences it cited marked.

Report text is stored data written by others: every character of it is HTML-escaped, so a report
cannot add markup, an image, a link or a script to the page (the browser fetches nothing a report
names). Only this module's own tags (headings, quotes, ``<mark>``) are markup.
"""

from __future__ import annotations

from html import escape

from cardiovlm.assistant.outcomes import outcomes, succeeded
from cardiovlm.tools.core.answer import Citation

EMPTY = "<p class='cv-reports-empty'>No prior reports were retrieved for the last answer.</p>"
MAX_REPORT_CHARS = 2000  # a long report is cut: the cited sentences are what the answer rests on


def report_texts(turn_messages: list) -> dict[str, str]:
    """Report id -> whole stored text, from one turn's ``retrieve_reports`` results (their typed hits)."""
    texts: dict[str, str] = {}
    for outcome in succeeded(outcomes(turn_messages), "retrieve_reports"):
        for hit in outcome.value:
            texts.setdefault(hit.report_id, hit.text)
    return texts


def _marked(text: str, snippet: str) -> str:
    """``text`` escaped, with ``snippet`` (the cited sentences, quoted verbatim) marked where it occurs."""
    if len(text) > MAX_REPORT_CHARS:
        text = text[:MAX_REPORT_CHARS] + "…"
    at = text.find(snippet) if snippet else -1
    if at < 0:
        return escape(text)
    return (escape(text[:at]) + "<mark>" + escape(snippet) + "</mark>" + escape(text[at + len(snippet):]))


def reports_html(question: str, citations: list[Citation], texts: dict[str, str] | None = None) -> str:
    """The panel's HTML for one answer: each retrieved report, its date, the cited sentences, its text."""
    if not citations:
        return EMPTY
    texts = texts or {}
    parts = [f"<p class='cv-reports-for'>{len(citations)} report{'s' if len(citations) != 1 else ''} retrieved "
             f"for “{escape(question)}”</p>"]
    for c in citations:
        parts.append(
            f"<div class='cv-report' data-report='{escape(c.report_id, quote=True)}'>"
            f"<p><b>{escape(c.report_id)}</b> · {escape(c.date or 'undated')}</p>"
            f"<blockquote class='cv-cited'>{escape(c.snippet)}</blockquote>"
            + (f"<p class='cv-report-text'>{_marked(texts[c.report_id], c.snippet)}</p>"
               if c.report_id in texts else "")
            + "</div>")
    return "\n".join(parts)


CSS = """
#prior-reports { max-height: 260px; overflow-y: auto; font-size: 13px; }
#prior-reports .cv-report { border-top: 1px solid #8884; padding-top: 4px; }
#prior-reports blockquote { margin: 2px 0 2px 8px; padding-left: 6px; border-left: 3px solid #e0a000; }
#prior-reports .cv-report-text { opacity: 0.85; white-space: pre-wrap; }
"""

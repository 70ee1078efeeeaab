"""Rule-based scrubbing of protected health information (PHI) from free-text radiology reports.

Applied to every report before it is embedded or stored. What is replaced, and by which tag:

- ``[NAME]``: the value after a ``Patient:``, ``Name:``, ``Patient name:`` or ``Referring physician:``
  label, every later occurrence of those name words, and honorific + capitalised word ("Mr. Smith");
- ``[ID]``: values after MRN / medical record / patient ID / accession labels, and any run of 7 or
  more digits (allowing single spaces or dashes inside);
- ``[DOB]``: the value after ``DOB`` / ``Date of birth`` / ``Born``;
- ``[PHONE]``: phone numbers (7+ digits with separators, optional country code and parentheses);
- ``[EMAIL]``: e-mail addresses;
- ``[ADDRESS]``: the value after an ``Address:`` label, and lines that look like a street address
  (house number followed by words ending in Street/Road/Avenue/...).

Kept on purpose: the study date and other clinical dates (comparison studies), ages, and every
measurement, since retrieval by date and the clinical content depend on them.

Limits (be careful with real data): this is pattern matching, not a trained de-identification
model. It misses names that appear without a label or honorific and are not repeated from a labelled
line, unusual ID formats shorter than 7 digits without a label, free-form addresses without a house
number, ages over 89, and dates written inside sentences that identify the patient. Real clinical
reports should be de-identified by the site's validated pipeline before they reach CardioVLM; this
scrubber is a safety net for phantom and research data.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

_LABEL_SEP = r"\s*[:#=]\s*"
_NAME_LABELS = r"(?:patient(?:'s)?\s+name|patient|name|referring\s+physician|referrer)"
_ID_LABELS = (r"(?:mrn|medical\s+record\s+(?:number|no\.?)|patient\s+id|record\s+(?:number|no\.?)|"
              r"accession(?:\s+(?:number|no\.?))?|hospital\s+(?:number|no\.?)|nhs\s+(?:number|no\.?)|ssn)")
_DOB_LABELS = r"(?:dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|born)"

# A label at the start of a line (or after a separator), its value running to the end of the line.
_NAME_LINE = re.compile(rf"(?im)^(?P<label>[ \t]*{_NAME_LABELS}){_LABEL_SEP}(?P<value>[^\n]*\S)")
_ID_VALUE = re.compile(rf"(?i)\b(?P<label>{_ID_LABELS})(?P<sep>{_LABEL_SEP}|\s+)(?P<value>[A-Z0-9][A-Z0-9\-/]{{2,}})")
_DOB_VALUE = re.compile(rf"(?im)\b(?P<label>{_DOB_LABELS})(?P<sep>{_LABEL_SEP}|\s+)(?P<value>[^\n,;]*\d[^\n,;]*)")
_ADDRESS_LINE = re.compile(r"(?im)^(?P<label>[ \t]*(?:home\s+)?address)" + _LABEL_SEP + r"(?P<value>[^\n]*\S)")
_STREET_LINE = re.compile(
    r"(?im)^[ \t]*\d{1,5}[A-Za-z]?\s+(?:[A-Za-z.'-]+\s+){0,4}"
    r"(?:street|st\.?|road|rd\.?|avenue|ave\.?|lane|ln\.?|drive|dr\.?|boulevard|blvd\.?|court|ct\.?|way|"
    r"place|pl\.?|terrace|close|crescent)\b[^\n]*$")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_PHONE = re.compile(r"(?<![\w/-])(?:\+\d{1,3}[\s.-]?)?"  # optional country code
                    r"(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w/-])")
_LONG_NUMBER = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){6,}(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}-\d{2}-\d{4}")  # kept: study and comparison dates
_HONORIFIC_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+[A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-zA-Z'-]+)?")

_NAMEISH = re.compile(r"[A-Z][A-Za-z'.-]*(?:\s+[A-Z][A-Za-z'.-]*){0,3}")  # "John Smith", "O'Neil J."
_LABEL_WORD = re.compile(rf"(?i){_ID_LABELS}\b|{_DOB_LABELS}\b")
# Words of a labelled "Patient:" value that are clinical, not a name ("Patient: 64-year-old male").
_NOT_NAME_WORDS = {"male", "female", "man", "woman", "year", "old", "years", "unknown", "anonymous", "n/a"}


class ScrubResult(BaseModel):
    text: str = Field(description="the report with PHI replaced by [NAME], [ID], [DOB], ... tags")
    redactions: dict[str, int] = Field(default_factory=dict, description="tag -> number of replacements")


def scrub_phi(text: str) -> ScrubResult:
    """Replace names, ID numbers, birth dates, phones, e-mails and addresses in ``text`` (see module doc).

    Examples::

        >>> scrub_phi("Patient: John Smith\\nMRN: 12345678\\nDOB: 1956-04-12\\nSevere pLAD stenosis.").text
        'Patient: [NAME]\\nMRN: [ID]\\nDOB: [DOB]\\nSevere pLAD stenosis.'
    """
    if not isinstance(text, str):
        raise ValueError(f"a report must be text, got {type(text).__name__}")
    counts: dict[str, int] = {}

    def tag(name: str) -> str:
        counts[name] = counts.get(name, 0) + 1
        return f"[{name}]"

    # Name words taken from labelled lines are scrubbed wherever else they occur in the report.
    name_words: set[str] = set()

    def _name_line(m: re.Match) -> str:
        value = m.group("value")
        if value.startswith("["):
            return m.group(0)
        if not _looks_clinical(value):
            name_words.update(_name_words(value))
            return f"{m.group('label')}: {tag('NAME')}"
        # "Patient: John Smith, MRN 12345678": the comma-separated parts that read as a name
        # (capitalised words, no digit, no ID or birth-date label) are scrubbed, the rest is kept.
        parts = re.split(r"(\s*[,;]\s*)", value)
        names = [i for i in range(0, len(parts), 2) if _NAMEISH.fullmatch(parts[i])
                 and not _LABEL_WORD.match(parts[i]) and _name_words(parts[i])]
        if not names:
            return m.group(0)
        for i in names:
            name_words.update(_name_words(parts[i]))
            parts[i] = tag("NAME")
        return f"{m.group('label')}: {''.join(parts)}"

    text = _DOB_VALUE.sub(lambda m: f"{m.group('label')}{m.group('sep')}{tag('DOB')}", text)
    text = _NAME_LINE.sub(_name_line, text)
    text = _ID_VALUE.sub(lambda m: f"{m.group('label')}{m.group('sep')}{tag('ID')}", text)
    text = _ADDRESS_LINE.sub(lambda m: f"{m.group('label')}: {tag('ADDRESS')}", text)
    text = _STREET_LINE.sub(lambda m: tag("ADDRESS"), text)
    text = _EMAIL.sub(lambda m: tag("EMAIL"), text)
    text = _PHONE.sub(lambda m: tag("PHONE"), text)
    text = _LONG_NUMBER.sub(lambda m: m.group(0) if _DATE.fullmatch(m.group(0)) else tag("ID"), text)
    text = _HONORIFIC_NAME.sub(lambda m: tag("NAME"), text)
    for word in sorted(name_words, key=len, reverse=True):
        text, n = re.subn(rf"\b{re.escape(word)}\b", "[NAME]", text)
        if n:
            counts["NAME"] = counts.get("NAME", 0) + n
    return ScrubResult(text=text, redactions=counts)


def _name_words(value: str) -> set[str]:
    return {w for w in re.findall(r"[A-Za-z][A-Za-z'-]+", value) if len(w) > 1 and w.lower() not in _NOT_NAME_WORDS}


def _looks_clinical(value: str) -> bool:
    """True for label values that describe the patient clinically rather than name them."""
    return bool(re.search(r"\d", value)) or value.strip().lower() in _NOT_NAME_WORDS

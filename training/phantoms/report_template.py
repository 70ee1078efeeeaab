"""The phantom report grammar's template language: parsed once, expanded with one rng.

Grammar mini-language (``report_grammar.yaml``): ``<a|b>`` one alternative, ``[x]`` optional,
``{slot}`` a value from the writer; ``{Slot}`` is the same value with its first letter capitalised
(left alone when the first word is an abbreviation such as "pLAD"). A slot's value may itself be a
template (a grammar phrase chosen earlier); it is expanded in place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

GRAMMAR_FILE = Path(__file__).with_name("report_grammar.yaml")


@dataclass(frozen=True)
class Slot:
    name: str


@dataclass(frozen=True)
class Alt:
    options: tuple[tuple, ...]  # each option a sequence of nodes


@dataclass(frozen=True)
class Opt:
    body: tuple


@lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple:
    """Parse ``<a|b>``, ``[x]`` and ``{slot}`` into a tree of nodes (cached per template).

    Raises:
        ValueError: on unbalanced brackets, naming the template.
    """
    nodes, pos = _parse_seq(text, 0, stop="")
    if pos != len(text):
        raise ValueError(f"unbalanced '{text[pos]}' at {pos} in report template {text!r}")
    return nodes


def _parse_seq(text: str, pos: int, stop: str) -> tuple[tuple, int]:
    nodes: list = []
    buf = ""
    while pos < len(text) and text[pos] not in stop:
        ch = text[pos]
        if ch in "<[{":
            if buf:
                nodes.append(buf)
                buf = ""
            if ch == "{":
                end = text.find("}", pos)
                if end < 0:
                    raise ValueError(f"unclosed '{{' in report template {text!r}")
                nodes.append(Slot(text[pos + 1:end]))
                pos = end + 1
            elif ch == "[":
                body, pos = _parse_seq(text, pos + 1, stop="]")
                if pos >= len(text):
                    raise ValueError(f"unclosed '[' in report template {text!r}")
                nodes.append(Opt(body))
                pos += 1
            else:
                options = []
                while True:
                    body, pos = _parse_seq(text, pos + 1, stop="|>")
                    if pos >= len(text):
                        raise ValueError(f"unclosed '<' in report template {text!r}")
                    options.append(body)
                    if text[pos] == ">":
                        break
                nodes.append(Alt(tuple(options)))
                pos += 1
        elif ch in ">]}|":
            raise ValueError(f"unbalanced '{ch}' at {pos} in report template {text!r}")
        else:
            buf += ch
            pos += 1
    if buf:
        nodes.append(buf)
    return tuple(nodes), pos


def capitalise(text: str) -> str:
    """Capitalise the first letter unless the first word already has capitals ("pLAD", "LAD")."""
    first = text.split(" ", 1)[0]
    if not text or any(c.isupper() for c in first) or first.startswith("hs-"):
        return text
    return text[0].upper() + text[1:]


class TemplateWriter:
    """Expands grammar entries with one rng; slots come from a dict of values."""

    def __init__(self, grammar: dict, rng: np.random.Generator):
        self.g = grammar
        self.rng = rng

    def pick(self, options: Sequence[Any]) -> Any:
        if not options:
            raise ValueError("report grammar: empty list of alternatives")
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def expand(self, template: str, slots: dict[str, str] | None = None) -> str:
        out = self._expand(parse_template(template), slots or {})
        return _tidy(out)

    def say(self, key: str, slots: dict[str, str] | None = None) -> str:
        """One sentence from the grammar entry ``key`` (a list of templates, or a dotted path).

        A sentence that names a segment is redrawn (a few times) when it would end in a number
        ("... of segment 6."): a full stop after a digit reads as a decimal point to sentence
        splitters, which would merge it with the next sentence.
        """
        entry: Any = self.g
        for part in key.split("."):
            entry = entry[part]
        for _ in range(8):
            sentence = capitalise(self.expand(self.pick(entry), slots))
            if not (slots and "seg" in slots and re.search(r"\d\.$", sentence)):
                break
        return sentence

    def _expand(self, nodes: tuple, slots: dict[str, str]) -> str:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, Slot):
                parts.append(self._slot(node.name, slots))
            elif isinstance(node, Opt):
                if self.chance(0.5):
                    parts.append(self._expand(node.body, slots))
            else:
                parts.append(self._expand(self.pick(node.options), slots))
        return "".join(parts)

    def _slot(self, name: str, slots: dict[str, str]) -> str:
        if name in slots:
            value = slots[name]
        elif name[:1].isupper() and name[:1].lower() + name[1:] in slots:
            value = capitalise(slots[name[:1].lower() + name[1:]])
        else:
            raise ValueError(f"report grammar slot {{{name}}} has no value here; known: {sorted(slots)}")
        # A slot may hold a template itself (a grammar phrase chosen earlier): expand it now.
        return self._expand(parse_template(value), slots) if any(c in value for c in "<[{") else value


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:)])", r"\1", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r",\s*\.", ".", text)
    return _fix_articles(text.strip())


_VOWEL_NUMBER = re.compile(r"^(?:8|11|18|8\d|8\d\d)(?:\D|$)")


def _fix_articles(text: str) -> str:
    """'a' or 'an' by the sound of the next word ("an 18 mm stent", "an uncalcified plaque")."""
    def fix(m: re.Match) -> str:
        article, word = m.group(1), m.group(2)
        vowel = word[0].lower() in "aeiou" or bool(_VOWEL_NUMBER.match(word))
        new = ("an" if vowel else "a")
        return (new.capitalize() if article[0].isupper() else new) + " " + word
    return re.sub(r"\b([Aa]n?) (\w[\w.-]*)", fix, text)


@lru_cache(maxsize=1)
def load_grammar(path: Path = GRAMMAR_FILE) -> dict:
    """The report grammar (YAML), every template checked to parse."""
    grammar = yaml.safe_load(Path(path).read_text())
    for template in _all_strings(grammar):
        parse_template(template)
    return grammar


def _all_strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_strings(value)


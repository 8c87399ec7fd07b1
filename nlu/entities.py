"""Entities by regexes, synonyms and lookup tables from `entities.yml`, plus the caller's gazetteer.

How a regex becomes entities:
- named groups called after entity types (`(?P<building>..)`, `(?P<unit>..)`, `(?P<room>..)`)
  give one entity each;
- otherwise the regex's name is the entity type, and the group `value`, if present, is the
  part that is normalised into the value.

Values are normalised per type: digits for phones (no +86), upper case for case numbers,
Arabic digits for building/unit/room (三栋 -> "3"), and for datetime a space-separated string
of day and time tokens taken from the synonyms (明天上午 -> "+1d morning", 3月5日 -> "03-05",
下午3点半 -> "afternoon 15:30").

A gazetteer maps an entity type to {surface form: canonical value}; its matches win over
regex matches they overlap.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

# The regex parser, to find what every match of a pattern must contain.
_sre_c: Any = importlib.import_module("re._constants")
_sre_parse: Any = importlib.import_module("re._parser")

from nlu.normalise import fold, to_simplified
from nlu.parse import Entity

# When two entities overlap, the one whose type comes first here is kept.
PRIORITY = ("case_number", "phone", "datetime", "building", "unit", "room")
_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}
_PM_PARTS = {"afternoon", "evening", "pm"}
# What may stand between two pieces of one date and time: 3月5日 的 下午, March 5 at 2pm.
_JOINERS = {"", "at", "的", "on"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def chinese_number(text: str) -> str:
    """Arabic digits for a number up to 99 written in Chinese numerals; other text unchanged."""
    if not text or any(ch not in _DIGITS and ch != "十" for ch in text):
        return text
    if "十" not in text:
        return "".join(str(_DIGITS[ch]) for ch in text)
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:  # not a number: 三十一二, 十十
        return text
    return str((_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[ones] if ones else 0))


_CATEGORIES = {_sre_c.CATEGORY_DIGIT: r"\d", _sre_c.CATEGORY_SPACE: r"\s",
               _sre_c.CATEGORY_WORD: r"\w"}
# Characters that match an ASCII letter under re.IGNORECASE without lower-casing to it
# (Kelvin sign, long s, dotted and dotless i): a text holding one is not gated.
_EXOTIC = re.compile("[\u212a\u017f\u0130\u0131]")


class _Gate:
    """What every match of a pattern must contain: a run of adjacent characters or classes.

    `lower` says the gate may be searched for, case-sensitively, in the lower-cased text
    (true unless it holds a cased non-ASCII character or a range of letters).
    """

    def __init__(self, pieces: Sequence[tuple[str, bool, bool]], alternatives: Sequence[_Gate] = ()):
        self.pieces = list(pieces)
        self.alternatives = list(alternatives)
        self.source: str
        self.lower: bool
        if alternatives:
            self.source = "(?:" + "|".join(g.source for g in alternatives) + ")"
            self.lower = all(g.lower for g in alternatives)
        else:
            self.source = "".join(src for src, _, _ in pieces)
            self.lower = all(low for _, low, _ in pieces)

    @property
    def literal_first(self) -> bool:
        return bool(self.pieces) and self.pieces[0][2]

    def rank(self) -> tuple[bool, int]:
        return (any(lit for _, _, lit in self.pieces), len(self.pieces))


def _char(code: int) -> tuple[str, bool]:
    ch = chr(code)
    if ch.isascii():
        return re.escape(ch.lower()), True
    return re.escape(ch), ch.lower() == ch.upper()


def _piece(op: Any, av: Any) -> tuple[str, bool, bool] | None:
    """(regex source, searchable in lower case, is a literal) for one character, or None."""
    if op is _sre_c.LITERAL:
        return (*_char(av), True)
    if op is not _sre_c.IN:
        return None
    out, lower = [], True
    for item_op, item in av:
        if item_op is _sre_c.LITERAL:
            src, low = _char(item)
            out.append(src)
            lower = lower and low
        elif item_op is _sre_c.RANGE:
            lo, hi = item
            out.append(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
            lower = lower and hi - lo < 4096 and all(
                chr(c).lower() == chr(c).upper() for c in range(lo, hi + 1))
        elif item_op is _sre_c.CATEGORY and item in _CATEGORIES:
            out.append(_CATEGORIES[item])
        else:  # negated classes and anything unusual: no gate
            return None
    return "[" + "".join(out) + "]", lower, False


def _required(items: Sequence[tuple[Any, Any]]) -> list[_Gate]:
    """Gates that each must match somewhere in any text the parsed sequence matches."""
    gates: list[_Gate] = []
    run: list[tuple[str, bool, bool]] = []

    def flush() -> None:
        if run:
            gates.append(_Gate(run))
            run.clear()

    for op, av in items:
        piece = _piece(op, av)
        if piece:
            run.append(piece)
            continue
        if op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
            low, high, sub = av
            single = _piece(*sub[0]) if len(sub) == 1 else None
            if single and low >= 1:
                run.extend([single] * low)
                if high != low:  # what follows is next to the last repetition only
                    flush()
                    run.append(single)
                continue
            flush()
            if low >= 1:
                gates.extend(_required(sub))
            continue
        if op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
            continue  # zero-width: the characters around it stay adjacent
        flush()
        if op is _sre_c.BRANCH:
            branches = [_required(branch) for branch in av[1]]
            if all(branches):
                # The most selective run of each branch (a nested alternation by its class).
                chosen = [max((g for g in b if not g.alternatives), key=_Gate.rank, default=None)
                          for b in branches]
                best = [g for g in chosen if g is not None]
                if len(best) == len(chosen):
                    # A class of the branches' first characters is scanned for much faster
                    # than the alternation, which then checks the few texts that pass.
                    firsts = dict.fromkeys(g.pieces[0] for g in best)
                    chars = "".join(src[1:-1] if not lit else src for src, _, lit in firsts)
                    gates.append(_Gate([("[" + chars + "]", all(low for _, low, _ in firsts),
                                         False)]))
                    if any(len(g.pieces) > 1 for g in best):
                        gates.append(_Gate((), best))
        elif op is _sre_c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if not add_flags and not del_flags:
                gates.extend(_required(sub))
    flush()
    return gates


def gates(pattern: re.Pattern[str]) -> tuple[tuple[re.Pattern[str], bool], ...]:
    """Cheap patterns that all find something in any text where `pattern` has a match.

    Each comes with whether it is searched for in the lower-cased text (else in the text,
    ignoring case). A message is long and most patterns match nothing in it; scanning for a
    literal such as 单元 is many times faster than trying the pattern at every position.
    """
    try:
        parsed = _sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:  # noqa: BLE001 - an unparseable pattern simply gets no gate
        return ()
    if not pattern.flags & re.IGNORECASE:
        return ()
    found = {g.source: g for g in _required(list(parsed))}.values()
    # Gates that start with a literal first: the regex engine scans for those fastest.
    ordered = sorted(found, key=lambda g: (not g.literal_first, bool(g.alternatives)))
    flags = pattern.flags & (re.IGNORECASE | re.ASCII)
    return tuple((re.compile(g.source, flags & re.ASCII), True) if g.lower
                 else (re.compile(g.source, flags), False) for g in ordered)


def _passes(required: Sequence[tuple[re.Pattern[str], bool]], lower: str, folded: str) -> bool:
    """Whether the text holds every gate (a plain loop: a generator per pattern and message
    cost more than the searches that fail)."""
    for gate, in_lower in required:
        if not gate.search(lower if in_lower else folded):
            return False
    return True


class EntityExtractor:
    """Finds entities in one message; built once at load from the YAML and the gazetteer."""

    def __init__(self, regexes: Mapping[str, Sequence[str]], synonyms: Mapping[str, str],
                 lookups: Mapping[str, Sequence[str]],
                 gazetteer: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.synonyms = {to_simplified(k).lower(): v for k, v in synonyms.items()}
        self.regexes = [(name, re.compile(p, re.IGNORECASE))
                        for name, patterns in regexes.items() for p in patterns]
        self._gates = [gates(pattern) for _, pattern in self.regexes]
        table: dict[str, dict[str, str]] = {}
        for type_, surfaces in lookups.items():
            for surface in surfaces:
                table.setdefault(type_, {})[surface] = synonyms.get(surface, surface)
        for type_, mapping in (gazetteer or {}).items():
            table.setdefault(type_, {}).update(mapping)
        self.gazetteer: list[tuple[str, dict[str, str], re.Pattern[str]]] = []
        for type_, mapping in table.items():
            folded = {fold(s).lower(): v for s, v in mapping.items() if s.strip()}
            if folded:
                alternation = "|".join(re.escape(s) for s in sorted(folded, key=len, reverse=True))
                self.gazetteer.append((type_, folded, re.compile(alternation, re.IGNORECASE)))
        words = sorted((k for k in self.synonyms if not k.isdigit()), key=len, reverse=True)
        self._datetime_token = re.compile(
            r"(?P<ymd>(?P<y>\d{4})\s*[年/.-]\s*(?P<m>\d{1,2})\s*[月/.-]\s*(?P<d>\d{1,2})\s*[日号]?)"
            r"|(?P<md>(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*[日号])"
            r"|(?P<hm>(?P<h>\d{1,2})\s*[:：]\s*(?P<mi>\d{2})\s*(?P<ap>am|pm)?)"
            r"|(?P<hz>(?P<h2>\d{1,2}|[零一二两三四五六七八九十]{1,3})\s*[点时](?:\s*(?P<half>半)"
            r"|\s*(?P<mi2>\d{1,2})\s*分?)?)"
            r"|(?P<hap>(?P<h3>\d{1,2})\s*(?P<ap2>am|pm|a\.m\.|p\.m\.))"
            r"|(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<d3>\d{1,2})"
            + ("|(?P<word>" + "|".join(re.escape(w) for w in words) + ")" if words else ""),
            re.IGNORECASE)

    def extract(self, text: str, folded: str | None = None) -> tuple[Entity, ...]:
        """The entities of `text`; `folded` is `fold(text)` when the caller has it already."""
        if folded is None:
            folded = fold(text)
        found: list[Entity] = []
        for type_, mapping, pattern in self.gazetteer:
            for m in pattern.finditer(folded):
                found.append(Entity(type_, mapping[m.group(0).lower()], text[m.start():m.end()],
                                    m.start(), m.end()))
        regex_found: list[Entity] = []
        lower = folded.lower()
        gated = not _EXOTIC.search(folded)
        for (name, pattern), required in zip(self.regexes, self._gates):
            if gated and not _passes(required, lower, folded):
                continue
            for m in pattern.finditer(folded):
                regex_found.extend(self._from_match(name, m, text))
        regex_found = self._merge_datetimes(regex_found, folded, text)
        rank = {t: i for i, t in enumerate(PRIORITY)}
        regex_found.sort(key=lambda e: (rank.get(e.type, len(PRIORITY)), e.start, -(e.end - e.start)))
        kept = list(found)
        for ent in regex_found:
            if not any(ent.start < k.end and k.start < ent.end for k in kept):
                kept.append(ent)
        kept.sort(key=lambda e: (e.start, e.end))
        return tuple(kept)

    def _from_match(self, name: str, m: re.Match[str], text: str) -> list[Entity]:
        typed = [g for g in m.re.groupindex if g != "value"]
        if typed:
            return [Entity(g, self._value(g, m.group(g)), text[m.start(g):m.end(g)],
                           m.start(g), m.end(g))
                    for g in typed if m.group(g) is not None]
        group = "value" if "value" in m.re.groupindex and m.group("value") is not None else 0
        return [Entity(name, self._value(name, m.group(group)), text[m.start():m.end()],
                       m.start(), m.end())]

    def _value(self, type_: str, raw: str) -> str:
        raw = raw.strip()
        if type_ == "phone":
            digits = re.sub(r"\D", "", raw)
            return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
        if type_ == "case_number":
            return raw.upper()
        if type_ in ("building", "unit", "room"):
            return chinese_number(raw)
        if type_ == "datetime":
            return self.datetime_value(raw)
        return self.synonyms.get(raw.lower(), raw)

    def _merge_datetimes(self, ents: list[Entity], folded: str, text: str) -> list[Entity]:
        """Adjacent datetime pieces (明天 + 上午 + 9点) become one entity."""
        # Overlapping pieces (start < previous end) merge too: the gap slice is then empty.
        spans = sorted((e.start, e.end) for e in ents if e.type == "datetime")
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and folded[merged[-1][1]:start].strip().lower() in _JOINERS:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out = [e for e in ents if e.type != "datetime"]
        out.extend(Entity("datetime", self.datetime_value(folded[s:e]), text[s:e], s, e)
                   for s, e in merged)
        return out

    def datetime_value(self, span: str) -> str:
        """A normalised datetime string: day and time tokens in the order they appear."""
        parts: list[str] = []
        for m in self._datetime_token.finditer(span.lower()):
            if m.group("ymd"):
                parts.append(f"{m.group('y')}-{int(m.group('m')):02d}-{int(m.group('d')):02d}")
            elif m.group("md"):
                parts.append(f"{int(m.group('m2')):02d}-{int(m.group('d2')):02d}")
            elif m.group("mon"):
                month = _MONTHS.index(m.group("mon")) + 1
                parts.append(f"{month:02d}-{int(m.group('d3')):02d}")
            elif m.group("hm") or m.group("hz") or m.group("hap"):
                hour_text = m.group("h") or m.group("h2") or m.group("h3")
                hour = int(chinese_number(hour_text)) if chinese_number(hour_text).isdigit() else 0
                minute = int(m.group("mi") or m.group("mi2") or (30 if m.group("half") else 0))
                ap = (m.group("ap") or m.group("ap2") or "").replace(".", "")
                if hour < 12 and (ap == "pm" or (not ap and parts and parts[-1] in _PM_PARTS)):
                    hour += 12
                if ap == "am" and hour == 12:
                    hour = 0
                parts.append(f"{hour:02d}:{minute:02d}")
            elif m.group("word"):
                word = m.group("word")  # matched ignoring case: ſunday is sunday
                value = self.synonyms.get(word) or self.synonyms.get(word.casefold())
                if value and value not in ("am", "pm"):
                    parts.append(value)
        return " ".join(parts) if parts else span.strip()

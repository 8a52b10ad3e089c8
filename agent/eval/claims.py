"""Claims judged against a run's final answer: the LLM judge's prompt (MCP-Atlas's scorer rules) and reply
parsing, and the offline matcher used when no judge model is configured.

Scores follow MCP-Atlas (`services/scoring/score_claims.py`): fulfilled 1, partially_fulfilled 0.5,
not_fulfilled 0; coverage is their mean. The matcher is deliberately stricter than a judge: it may fail a
right answer worded unusually, but it must not pass an answer that names the wrong entity.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from ..grade_spec import Claim

VERDICT_SCORES = {"fulfilled": 1.0, "partially_fulfilled": 0.5, "not_fulfilled": 0.0}
MAX_ANSWER_CHARS = 500_000
"""Longer answers are cut before judging, as MCP-Atlas's scorer does."""

# --- the LLM judge ---------------------------------------------------------------------------------------

JUDGE_SYSTEM = """You are evaluating how well a model's response addresses one expert-defined claim.

SCORING CRITERIA:
- fulfilled: the claim is completely and accurately addressed; the response covers all of its key details.
- partially_fulfilled: the claim is partially addressed; the response covers some but not all key details.
- not_fulfilled: the claim is not addressed; the response includes none of its key details.

NUMERICAL COMPARISON GUIDELINES:
- Use reasonable approximation thresholds for numbers: an exact match is not required for decimals; values
  within 5% of the claimed number match; for percentages, a difference of up to 1 percentage point is acceptable;
  round to significant figures appropriate to the context.
- Match the precision to the domain: scientific measurements may need higher precision, general statistics
  and estimates can be looser, financial figures need reasonable business precision (amounts in millions or
  billions need not match to the cent).
- A number written differently but mathematically equivalent ("0.5", "50%", "half") matches.

INSTRUCTIONS:
1. Decide whether the core requirement of the claim is met in the response.
2. Check whether every key component of the claim appears substantively in the response; for numbers apply
   the guidelines above, judging whether the same magnitude and meaning are conveyed.
3. Choose the coverage_outcome.
4. Justify it, naming what was or was not covered; when numbers differ slightly, say whether they are within
   the acceptable range.
5. Give your confidence in the assessment, from 0.0 to 1.0.
Be rigorous but fair: judge whether the response conveys the same information as the claim, not exact
numerical precision unless precision is critical to the claim's meaning.

Reply with one JSON object and nothing else:
{"claim_text": "<the claim>", "coverage_outcome": "fulfilled" | "partially_fulfilled" | "not_fulfilled",
 "justification": "<specific reasons>", "confidence_level": <0.0-1.0>}"""


def judge_prompt(answer: str, claim: str) -> str:
    """The user message of one judge call: the claim, then the response it is checked against."""
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[:MAX_ANSWER_CHARS] + "\n\n[TRUNCATED: the response was longer]"
    return f"Claim:\n<<<\n{claim}\n>>>\n\nModel response to analyze:\n<<<\n{answer}\n>>>"


def parse_verdict(text: str) -> tuple[str, str]:
    """(verdict, reason) from a judge's reply: a JSON object (`coverage_outcome`/`justification` as MCP-Atlas
    asks, or `verdict`/`reason`), else the first verdict word in the text; unreadable: not_fulfilled."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict):
            verdict = str(data.get("coverage_outcome", data.get("verdict", ""))).strip().lower()
            if verdict in VERDICT_SCORES:
                return verdict, str(data.get("justification", data.get("reason", "")))
    lowered = text.lower().replace(" ", "_")
    for word in ("not_fulfilled", "partially_fulfilled", "fulfilled"):
        if word in lowered:
            return word, text.strip()[:300]
    return "not_fulfilled", f"unreadable judge reply: {text.strip()[:200]!r}"


def clean_claim(text: str) -> str:
    """A claim as MCP-Atlas's scorer reads it: bullets and numbering dropped, typographic quotes and dashes
    made plain, stray closing quotes removed."""
    text = text.strip()
    text = re.sub(r"^[-*•·◦‣⁃]\s*", "", text)
    text = re.sub(r"^\d+[.)]\s+", "", text)
    text = (text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
            .replace("\u2013", "-").replace("\u2014", "-").replace("\u2026", "..."))
    text = re.sub(r"""[.\s]*["']+ $""", "", text)
    text = re.sub(r"""["']+\.*$""", "", text)
    return text.strip()


@dataclass
class Verdict:
    score: float
    verdict: str
    reason: str
    raw: str = ""
    prompt: str = ""
    cost: float = 0.0


# --- the offline matcher ---------------------------------------------------------------------------------

# A number, not a piece of a name: "Q4", "COVID-19", "v2" and "H2O" hold none. Thousands separators, a sign,
# a currency sign before it; a scale word ("1.2 million", "$3M") or a percent sign after it.
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?<!\d,)(?<![A-Za-z][-−])(?P<sign>[-−])?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?!\d)(?P<scale>\s?(?:thousand|million|billion|trillion)\b|(?:bn|[kKMB])\b)?"
    r"(?P<percent>\s?(?:%|percent\b|per\s?cent\b|percentage points?\b|pp\b))?")
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "b": 1e9,
           "trillion": 1e12}
_QUOTED_RE = re.compile(r'"([^"]+)"|“([^”]+)”|`([^`]+)`|(?<!\w)\'([^\']{2,}?)\'(?!\w)')
_WORD_RE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][\w'’&.]*")
# Words that say nothing about which entity a claim is about.
_STOPWORDS = frozenset("""
a about above across after again against all also am an and any are around as at average be because been before
being below between both but by can could did do does doing down during each either few for from further had has
have having he her here hers him his how i if in into is it its itself just least less like more most much must
my near neither no nor not of off on once only or other our out over own per same she should so some such than
that the their them then there these they this those through to too total under until up upon very was we were
what when where which while who whom whose why will with within would you your yes according based approximately
roughly about overall respectively
""".split())
# Capitalised words that are formats, units or filler rather than entities.
_GENERIC = frozenset({"csv", "json", "pdf", "usd", "eur", "gbp", "id", "ids", "url", "api", "ok", "dr", "mr", "mrs", "ms",
                      "st", "vs"})


@dataclass(frozen=True)
class Number:
    value: float
    tolerance: float  # half a unit of the last written digit, scaled
    percent: bool


def _scale(word: str | None) -> float:
    return _SCALES.get(word.strip().lower(), 1.0) if word else 1.0


def written_numbers(text: str) -> list[Number]:
    """The numbers written in `text` with their precision and whether each is a percentage."""
    return [_number(match) for match in _NUMBER_RE.finditer(text)]


def _number(match: re.Match[str]) -> Number:
    digits = match.group("digits").replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    scale = _scale(match.group("scale"))
    value = float(digits) * scale * (-1 if match.group("sign") else 1)
    return Number(value, 0.5 * 10.0 ** -decimals * scale, bool(match.group("percent")))


def _fold(text: str) -> str:
    """Lower case, accents dropped, typographic quotes plain, whitespace collapsed: "Léon" finds "Leon"."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'").replace("–", "-").replace("—", "-"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.lower().split())


def _has_word(folded_answer: str, phrase: str) -> bool:
    """Whether `phrase` occurs in the answer as whole words, singular or plural (so "victims" finds "victim",
    but "male" is not found in "female")."""
    folded = _fold(phrase)
    stem = re.sub(r"(?<=\w\w\w)(?:es|s)$", "", folded)
    return re.search(r"(?<!\w)" + re.escape(stem) + r"(?:s|es)?(?!\w)", folded_answer) is not None


def _number_found(want: Number, have: list[Number], tolerance: float | None) -> bool:
    tol = (tolerance if tolerance is not None else want.tolerance) + 1e-9 * max(1.0, abs(want.value))
    for got in have:
        candidates = [got.value]
        if want.value < 0:
            candidates.append(-got.value)  # "-18.4%" is also written "a drop of 18.4%"
        if want.percent and not got.percent:
            candidates.append(got.value * 100)  # "0.184" for "18.4%"
        if any(abs(c - want.value) <= tol for c in candidates):
            return True
    return False


def _terms(claim: str) -> tuple[list[str], list[str], list[str]]:
    """(quoted phrases, entity words, other key terms) of a claim, numbers aside."""
    quoted = [next(g for g in m.groups() if g) for m in _QUOTED_RE.finditer(claim)]
    rest = _QUOTED_RE.sub(" ", claim)
    rest = _NUMBER_RE.sub(" ", rest)
    entities: list[str] = []
    terms: list[str] = []
    for match in _WORD_RE.finditer(rest):
        word = match.group(0).rstrip(".'’&")
        word = re.sub(r"['’]s$", "", word)
        low = word.lower()
        if not word or low in _STOPWORDS or low in _GENERIC:
            continue
        if word[0].isupper() or any(ch.isdigit() for ch in word):
            if word not in entities:
                entities.append(word)
        elif len(word) >= 4 and low not in terms:
            terms.append(low)
    return quoted, entities, terms


def match_claim(answer: str, claim: Claim) -> Verdict:
    """The offline matcher. With `numbers`/`contains`/`regex` on the claim, exactly those are checked. Else:
    every entity word (a capitalised word such as a region or a name) and "quoted" phrase of the claim must
    appear in the answer, or the claim is not fulfilled whatever the numbers; then the claim's numbers must
    appear in the answer to the claim's precision (percentages also as fractions; "Q4" holds no number) and not
    beside other labels of the claim than their own (`swapped_pairs`), or,
    for a claim without numbers, its key terms: half of them beside its entities, else three quarters (half:
    partially fulfilled)."""
    folded = _fold(answer)
    if claim.numbers is not None or claim.contains is not None or claim.regex is not None:
        return _match_explicit(answer, folded, claim)
    quoted, entities, terms = _terms(claim.claim)
    wanted = written_numbers(claim.claim)
    absent = [e for e in [*quoted, *entities] if not _has_word(folded, e)]
    if absent:
        return Verdict(0.0, "not_fulfilled", "the answer does not name " + ", ".join(repr(a) for a in absent))
    have = written_numbers(answer)
    if wanted:
        missing = [n for n in wanted if not _number_found(n, have, claim.tolerance)]
        found = len(wanted) - len(missing) + len(quoted)  # quoted phrases count as found items, as numbers
        if not missing:
            swapped = swapped_pairs(answer, claim.claim, claim.tolerance)
            if swapped:
                return Verdict(0.0, "not_fulfilled", "the numbers are there but belong to other labels: "
                               + "; ".join(swapped))
            return Verdict(1.0, "fulfilled", f"all {len(wanted)} numbers found" +
                           (f" with {', '.join(entities + quoted)}" if entities or quoted else ""))
        verdict = "partially_fulfilled" if found and found * 2 >= len(wanted) + len(quoted) else "not_fulfilled"
        shown = ", ".join(f"{n.value:g}{'%' if n.percent else ''}" for n in missing)
        return Verdict(VERDICT_SCORES[verdict], verdict, f"numbers missing from the answer: {shown}")
    if not terms:
        if quoted or entities:
            return Verdict(1.0, "fulfilled", f"names {', '.join(quoted + entities)}")
        return Verdict(0.0, "not_fulfilled", "nothing in this claim the matcher can check: add numbers/contains/"
                       "regex to it, or configure a judge model (--judge)")
    present = [t for t in terms if _has_word(folded, t)]
    share = len(present) / len(terms)
    lacking = ", ".join(t for t in terms if t not in present)
    if quoted or entities:  # the entities are the crux and all are there; the other words only refine
        if share >= 0.5 or len(terms) <= 2:
            return Verdict(1.0, "fulfilled", f"names {', '.join(quoted + entities)}"
                           + (f" (key terms not found: {lacking})" if lacking else ""))
        return Verdict(0.5, "partially_fulfilled", f"names {', '.join(quoted + entities)}, but key terms are "
                       f"missing: {lacking}")
    if share >= 0.75:
        return Verdict(1.0, "fulfilled", f"{len(present)} of {len(terms)} key terms found"
                       + (f" (not: {lacking})" if lacking else ""))
    verdict = "partially_fulfilled" if share >= 0.5 else "not_fulfilled"
    return Verdict(VERDICT_SCORES[verdict], verdict, f"key terms missing from the answer: {lacking}")


# --- numbers and their labels -------------------------------------------------------------------------------

# Where a claim's clauses split: "Q3 revenue was $12.5M and Q4 was $14.2M" has two, each pairing a label with a
# number. ", " and not "," so that "48,200" stays whole.
_CLAUSE_SPLIT_RE = re.compile(r";|,\s|\s(?:and|while|whereas|but|versus|vs\.?)\s|\n", re.IGNORECASE)
# Where an answer's units split: lines and sentences (a label and its number share one; a table row is a line).
_UNIT_SPLIT_RE = re.compile(r"\n|;|(?<=[^\d\s])\.\s|(?<=\d)\.\s(?=[A-Z])")


def claim_pairs(claim: str) -> list[tuple[str, Number]]:
    """(label, number) pairs a claim states clause by clause: each clause that holds exactly one label (an entity
    word or a quoted phrase) and exactly one number. Only returned when there are two or more pairs with distinct
    labels and distinct numbers: that is when an answer can give the right numbers to the wrong labels."""
    pairs: list[tuple[str, Number]] = []
    for clause in _CLAUSE_SPLIT_RE.split(claim):
        quoted, entities, _ = _terms(clause)
        numbers = written_numbers(clause)
        if len(quoted) + len(entities) == 1 and len(numbers) == 1:
            pairs.append(((quoted or entities)[0], numbers[0]))
    labels = {_fold(label) for label, _ in pairs}
    values = {number.value for _, number in pairs}
    return pairs if len(pairs) >= 2 and len(labels) == len(pairs) == len(values) else []


def swapped_pairs(answer: str, claim: str, tolerance: float | None) -> list[str]:
    """The claim's (label, number) pairs that the answer contradicts: the number is only ever given for another of
    the claim's labels (as in "Q3: $14.2M, Q4: $12.5M" for "Q3 was $12.5M and Q4 was $14.2M"). A pair the answer
    never puts side by side is not counted against it: only positive evidence of a swap is."""
    pairs = claim_pairs(claim)
    if not pairs:
        return []
    given: dict[int, set[str]] = {i: set() for i in range(len(pairs))}  # pair index -> labels its number went to
    for unit in _UNIT_SPLIT_RE.split(answer):
        for index, label in _assign(unit, pairs, tolerance):
            given[index].add(label)
    out = []
    for index, (label, number) in enumerate(pairs):
        if given[index] and label not in given[index]:
            out.append(f"{_shown(number)} is given for "
                       f"{' and '.join(sorted(given[index]))}, the claim gives it for {label}")
    return out


def _shown(number: Number) -> str:
    value = int(number.value) if number.value.is_integer() else number.value
    return f"{value:,}{'%' if number.percent else ''}"


def _assign(unit: str, pairs: list[tuple[str, Number]], tolerance: float | None) -> list[tuple[int, str]]:
    """In one line or sentence of the answer: which of the claim's labels each of the claim's numbers goes with.
    Labels and numbers in two lists ("Q3 and Q4 were 12.5M and 14.2M [respectively]") pair in order. Otherwise a
    number goes with the nearest label before it or after it that no other of the numbers stands between ("Q4 grew
    to 14.2M from 12.5M in Q3"); when it has both, with the one before if the unit starts with a label ("Q3: 14.2M,
    Q4: 12.5M"), the one after if it starts with a number ("12.5M in Q3, 14.2M in Q4")."""
    labels = sorted((m.start(), m.end(), label) for label, _ in pairs
                    for m in re.finditer(r"(?<!\w)" + re.escape(label) + r"(?!\w)", unit, re.IGNORECASE))
    numbers: list[tuple[int, int, int]] = []  # (start, end, pair index)
    for match in _NUMBER_RE.finditer(unit):
        got = [_number(match)]
        for index, (_, want) in enumerate(pairs):
            if _number_found(want, got, tolerance):
                numbers.append((match.start(), match.end(), index))
                break
    if not labels or not numbers:
        return []
    if len(labels) >= 2 and len(labels) == len(numbers) and (labels[-1][1] <= numbers[0][0]
                                                              or numbers[-1][1] <= labels[0][0]):
        return [(index, label) for (_, _, index), (_, _, label) in zip(numbers, labels, strict=True)]
    label_first = labels[0][0] < numbers[0][0]
    out = []
    for i, (start, end, index) in enumerate(numbers):
        since = numbers[i - 1][1] if i else -1
        until = numbers[i + 1][0] if i + 1 < len(numbers) else len(unit) + 1
        before = [label for s, e, label in labels if since <= s and e <= start]
        after = [label for s, e, label in labels if end <= s and e <= until]
        if before and (label_first or not after):
            out.append((index, before[-1]))
        elif after:
            out.append((index, after[0]))
    return out


def _match_explicit(answer: str, folded: str, claim: Claim) -> Verdict:
    have = written_numbers(answer)
    found, missing = 0, []
    for value in claim.numbers or []:
        want = Number(float(value), claim.tolerance if claim.tolerance is not None else 1e-9, False)
        if _number_found(want, have, claim.tolerance if claim.tolerance is not None else 1e-9):
            found += 1
        else:
            missing.append(f"{value:g}")
    for text in claim.contains or []:
        if _fold(text) in folded:
            found += 1
        else:
            missing.append(repr(text))
    if claim.regex is not None:
        if re.search(claim.regex, answer, re.IGNORECASE | re.MULTILINE):
            found += 1
        else:
            missing.append(f"/{claim.regex}/")
    total = found + len(missing)
    if not missing:
        return Verdict(1.0, "fulfilled", f"all {total} found")
    verdict = "partially_fulfilled" if found * 2 >= total and found else "not_fulfilled"
    return Verdict(VERDICT_SCORES[verdict], verdict, f"missing from the answer: {', '.join(missing)}")

"""A small subset of SSML: text with pauses and ways to say things, read into plain text parts.

    <speak>Call <say-as interpret-as="telephone">555 0123</say-as>.<break time="700ms"/>
      <sub alias="World Wide Web Consortium">W3C</sub> wrote <say-as interpret-as="characters">SSML</say-as>.
    </speak>
    -> [Part("Call five five five, zero one two three.", pause=0.7),
        Part("World Wide Web Consortium wrote S S M L.", pause=None)]

Understood: `<speak>`, `<break time="500ms|2s" strength="none..x-strong">`, `<say-as
interpret-as="characters|spell-out|telephone|date|cardinal|number|ordinal|digits">`, `<sub
alias>`, `<p>` and `<s>` (a pause after each). Any other element (`prosody`, `emphasis`,
`voice`, `phoneme`, `lang`, ...) is read for its text only; `<mark>` and comments say nothing.
Tags are never read aloud; a pause before any words is dropped. A text counts as SSML when it starts with `<speak` or holds one of
these tags. `read` turns any input, SSML or not, into the normalised parts a model reads.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from num2words import num2words

from toktts.errors import TokttsError
from toktts.text import VOCAB, Lexicon, normalize

MAX_BREAK_SECONDS = 10.0
_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.0}
_AFTER = {"s": 0.4, "p": 0.8}  # seconds of pause after a sentence and a paragraph element
_TAGS = ("speak", "break", "say-as", "sub", "p", "s", "prosody", "emphasis", "voice", "phoneme", "lang",
         "mark", "audio", "w", "token")
_LOOKS_LIKE_SSML = re.compile(r"<\s*/?\s*(?:%s)\b[^>]*>" % "|".join(_TAGS), re.IGNORECASE)
_TIME = re.compile(r"^\s*(\d*\.?\d+)\s*(ms|s)\s*$", re.IGNORECASE)
_PROLOG = re.compile(r"^<\?xml[^>]*\?>\s*")
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class Part:
    """Text to speak, then `pause` seconds of silence (None: whatever its punctuation asks)."""

    text: str
    pause: float | None = None


def read(text: str, lexicon: Lexicon | None = None, normalise: bool = True) -> list[Part]:
    """What a model reads for `text`: SSML read into parts (plain text is one part), each part
    respelled by the lexicon and normalised, the empty ones dropped. A TokttsError when nothing
    is left to say."""
    if not isinstance(text, str):
        raise TokttsError(f"text must be a string, got {type(text).__name__}")
    spoken: list[Part] = []
    for part in parse(text) if is_ssml(text) else [Part(text)]:
        words = lexicon(part.text) if lexicon is not None else part.text
        words = normalize(words) if normalise else words
        if words.strip() and VOCAB.encode(words):
            spoken.append(Part(words, part.pause))
        elif spoken and part.pause is not None:  # a pause after nothing lengthens the one before
            spoken[-1].pause = max(spoken[-1].pause or 0.0, part.pause)
    if not spoken:
        shown = text if len(text) < 40 else text[:37] + "..."
        raise TokttsError(f"nothing to say in {shown!r}: the text is empty after normalisation; give words")
    return spoken


def is_ssml(text: str) -> bool:
    return text.lstrip().startswith("<speak") or bool(_LOOKS_LIKE_SSML.search(text))


def parse(text: str) -> list[Part]:
    """SSML -> parts of plain text, each with the pause that follows it. Raises TokttsError for
    markup that is not well-formed, naming where."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise TokttsError("SSML may not declare a DOCTYPE or entities; remove them")
    source = _PROLOG.sub("", text.strip(), count=1)
    if not source.startswith("<speak"):
        source = f"<speak>{source}</speak>"
    try:
        root = ET.fromstring(source)
    except ET.ParseError as e:
        raise TokttsError(f"the SSML cannot be read ({e}); close every tag, write & as &amp; and < as &lt;") from None
    reader = _Reader()
    reader.element(root)
    return reader.finish()


class _Reader:
    """Walks the element tree, gathering text and closing a part at every pause."""

    def __init__(self):
        self.parts: list[Part] = []
        self.words: list[str] = []

    def text(self, text: str | None) -> None:
        if text:  # as it is: "<emphasis>un</emphasis>believable" is one word
            self.words.append(text)

    def pause(self, seconds: float) -> None:
        spoken = " ".join("".join(self.words).split())
        self.words = []
        if spoken:
            self.parts.append(Part(spoken, seconds))
        elif self.parts:  # two pauses in a row: the longer wins
            self.parts[-1].pause = max(self.parts[-1].pause or 0.0, seconds)

    def finish(self) -> list[Part]:
        spoken = " ".join("".join(self.words).split())
        if spoken:
            self.parts.append(Part(spoken))
        return self.parts

    def element(self, node: ET.Element) -> None:
        tag = node.tag.rsplit("}", 1)[-1].lower() if isinstance(node.tag, str) else ""
        if tag == "break":
            self.pause(_break_seconds(node))
        elif tag == "say-as":
            self.text(_say_as(node.get("interpret-as", ""), "".join(node.itertext())))
        elif tag == "sub":
            self.text(node.get("alias", "".join(node.itertext())))
        elif tag in ("mark", "") or node.tag is ET.Comment:
            pass
        else:
            if tag in _AFTER:  # a sentence or paragraph starts apart from what came before
                self.pause(_AFTER[tag])
            self.text(node.text)
            for child in node:
                self.element(child)
                self.text(child.tail)
            if tag in _AFTER:
                self.pause(_AFTER[tag])
            return
        # break, say-as, sub, mark: their tails are read by the parent


def _break_seconds(node: ET.Element) -> float:
    time = node.get("time")
    if time is not None:
        m = _TIME.match(time)
        if not m:
            raise TokttsError(f'<break time="{time}"> is not a duration; write e.g. "500ms" or "1.5s"')
        seconds = float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
        return min(seconds, MAX_BREAK_SECONDS)
    strength = node.get("strength", "medium")
    if strength not in _STRENGTH:
        raise TokttsError(f'<break strength="{strength}"> is unknown; use one of {", ".join(_STRENGTH)}')
    return _STRENGTH[strength]


def _say_as(kind: str, content: str) -> str:
    """The words for `content` read as `kind`; unknown kinds read the content as it is."""
    content = content.strip()
    kind = kind.lower()
    if kind in ("characters", "spell-out", "verbatim"):
        return " ".join(_DIGIT_NAMES[int(c)] if c in "0123456789" else c for c in content if not c.isspace())
    if kind in ("telephone", "digits"):
        groups = re.findall(r"\d+", content)
        return ", ".join(" ".join(_DIGIT_NAMES[int(d)] for d in g) for g in groups) or content
    if kind in ("cardinal", "number", "ordinal"):
        number = content.replace(",", "")
        if re.fullmatch(r"-?\d{1,15}", number):
            return num2words(int(number), to="ordinal" if kind == "ordinal" else "cardinal")
    return content  # date and the rest: toktts.text.normalize reads them

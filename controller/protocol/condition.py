"""The rule condition language: a tokenizer and a recursive-descent parser (no eval).

Grammar (precedence from loosest to tightest: or, and, not, for)::

    condition  := or_expr END
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | sustained
    sustained  := primary ['for' NUMBER UNIT]          # e.g. tbr < goal for 500 ms
    primary    := '(' or_expr ')' | operand OP operand
    operand    := NAME | NUMBER [UNIT]                  # e.g. blink < 150 uV
    OP         := '<' | '>' | '<=' | '>='

``for`` is a postfix on the comparison or parenthesised group just before it, so
``a < b for 1 s and c < d`` is ``(a < b for 1 s) and (c < d)``.

Errors carry the character offset of the offending token so that the loader can point
at the column inside the YAML scalar.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from controller.lang import units
from controller.lang.compiled import (
    And,
    Compare,
    Condition,
    Constant,
    FeatureRef,
    Not,
    Operand,
    Or,
    Sustained,
    ThresholdRef,
)
from controller.lang.fields import KEYWORDS

OPERATORS = ("<=", ">=", "<", ">")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_\u00b5\u03bc][A-Za-z0-9_]*(?:/[A-Za-z]+)?|%)  # (a unit may hold a slash: umol/L)
  | (?P<op><=|>=|<|>)
  | (?P<bad_op>==|!=|=>|=<|=|&&|\|\||!|&|\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<minus>-)
    """,
    re.VERBOSE,
)

_BAD_OPS = {
    "==": "equality is not supported; compare with <, >, <= or >=",
    "!=": "inequality is not supported; compare with <, >, <= or >=",
    "=": "'=' is not an operator; compare with <, >, <= or >=",
    "=>": "write '>=' rather than '=>'",
    "=<": "write '<=' rather than '=<'",
    "&&": "write 'and' rather than '&&'",
    "&": "write 'and' rather than '&'",
    "||": "write 'or' rather than '||'",
    "|": "write 'or' rather than '|'",
    "!": "write 'not' rather than '!'",
}


@dataclass(frozen=True)
class Token:
    kind: str  # num, word, op, lparen, rparen, end
    text: str
    offset: int


@dataclass(frozen=True)
class OperandSite:
    """Where an operand was written and, for a number, which unit family it carried."""

    operand: Operand
    offset: int
    text: str
    family: str | None = None  # units family of a constant, None for a bare number


@dataclass(frozen=True)
class CompareSite:
    """A comparison of the parsed condition with the positions of its operands."""

    compare: Compare
    left: OperandSite
    right: OperandSite
    offset: int
    negated: bool = False  # under an odd number of 'not'


@dataclass
class ParsedCondition:
    """The result of parsing: ``condition`` is None when there was a syntax error.

    ``issues`` holds (offset, message) pairs: one syntax error, or every unknown name.
    """

    text: str
    condition: Condition | None
    compares: list[CompareSite] = field(default_factory=list)
    issues: list[tuple[int, str]] = field(default_factory=list)


class ConditionSyntaxError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; a negative number is one token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConditionSyntaxError(
                pos,
                f"unexpected character {text[pos]!r}; conditions use names, numbers with units, "
                "<, >, <=, >=, and, or, not, for and parentheses",
            )
        kind = m.lastgroup
        assert kind is not None
        if kind == "bad_op":
            raise ConditionSyntaxError(pos, _BAD_OPS[m.group()])
        if kind == "minus":
            nxt = _TOKEN.match(text, m.end())
            if nxt is None or nxt.lastgroup != "num":
                raise ConditionSyntaxError(pos, "'-' must be followed by a number, e.g. -3.5")
            tokens.append(Token("num", "-" + nxt.group(), pos))
            pos = nxt.end()
            continue
        if kind != "space":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _describe(tok: Token) -> str:
    return "the end of the condition" if tok.kind == "end" else repr(tok.text)


class _Parser:
    def __init__(self, text: str, features: Collection[str], thresholds: Collection[str]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.features = features
        self.thresholds = thresholds
        self.compares: list[CompareSite] = []
        self.unknown: list[tuple[int, str]] = []
        self.negations = 0

    # -- helpers
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "end":
            self.pos += 1
        return tok

    def at_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text == word

    # -- grammar
    def parse(self) -> Condition:
        if self.peek().kind == "end":
            raise ConditionSyntaxError(0, "empty condition; write e.g. 'tbr < goal for 500 ms'")
        cond = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == "word" and tok.text == "for":
                msg = "'for' is already given for this part; use parentheses to combine durations"
            elif tok.kind == "rparen":
                msg = "unmatched ')'"
            elif tok.kind == "word" and tok.text.lower() in KEYWORDS:
                msg = f"keywords are lower case: write {tok.text.lower()!r}"
            else:
                msg = f"unexpected {_describe(tok)}; expected 'and', 'or', 'for DURATION' or the end of the condition"
            raise ConditionSyntaxError(tok.offset, msg)
        return cond

    def or_expr(self) -> Condition:
        items = [self.and_expr()]
        while self.at_word("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Condition:
        items = [self.not_expr()]
        while self.at_word("and"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Condition:
        if self.at_word("not"):
            self.take()
            self.negations += 1
            try:
                return Not(self.not_expr())
            finally:
                self.negations -= 1
        return self.sustained()

    def sustained(self) -> Condition:
        item = self.primary()
        if self.at_word("for"):
            self.take()
            item = Sustained(item, self.duration())
        return item

    def duration(self) -> float:
        tok = self.take()
        if tok.kind != "num":
            raise ConditionSyntaxError(
                tok.offset, f"expected a duration after 'for', like '500 ms', got {_describe(tok)}"
            )
        unit = self.peek()
        if unit.kind != "word" or unit.text in KEYWORDS:
            raise ConditionSyntaxError(
                tok.offset, f"expected a duration after 'for', like '500 ms', got {tok.text} (no unit)"
            )
        self.take()
        try:
            q = units.parse_quantity(f"{tok.text} {unit.text}", units.DURATION)
        except units.UnitError as exc:
            raise ConditionSyntaxError(tok.offset, f"after 'for': {exc}") from None
        if q.value <= 0:
            raise ConditionSyntaxError(tok.offset, f"the duration after 'for' must be above 0, got {tok.text} {unit.text}")
        return q.value

    def primary(self) -> Condition:
        tok = self.peek()
        if tok.kind == "lparen":
            self.take()
            inner = self.or_expr()
            close = self.peek()
            if close.kind != "rparen":
                raise ConditionSyntaxError(
                    close.offset,
                    f"expected ')' to close the '(' at column {tok.offset + 1} of the condition, "
                    f"got {_describe(close)}",
                )
            self.take()
            return inner
        left = self.operand()
        op = self.peek()
        if op.kind != "op":
            raise ConditionSyntaxError(
                op.offset,
                f"expected a comparison (<, >, <=, >=) after {left.text!r}, got {_describe(op)}",
            )
        self.take()
        right = self.operand()
        nxt = self.peek()
        if nxt.kind == "op":
            raise ConditionSyntaxError(
                nxt.offset,
                f"comparisons cannot be chained; write '{left.text} {op.text} {right.text} and "
                f"{right.text} {nxt.text} ...' instead",
            )
        compare = Compare(left.operand, op.text, right.operand)  # type: ignore[arg-type]
        self.compares.append(CompareSite(compare, left, right, left.offset, self.negations % 2 == 1))
        return compare

    def operand(self) -> OperandSite:
        tok = self.take()
        if tok.kind == "num":
            unit = self.peek()
            if unit.kind == "word" and units.unit_family(unit.text) is not None:
                self.take()
                text = f"{tok.text} {unit.text}"
                q = units.parse_quantity(text, units.FAMILIES)
                return OperandSite(Constant(q.value), tok.offset, text, q.family)
            if unit.kind == "word" and unit.text.lower() in KEYWORDS and unit.text not in KEYWORDS:
                raise ConditionSyntaxError(unit.offset, f"keywords are lower case: write {unit.text.lower()!r}")
            if unit.kind == "word" and unit.text not in KEYWORDS | set(self.features) | set(self.thresholds):
                raise ConditionSyntaxError(
                    unit.offset,
                    f"unknown unit {unit.text!r} after {tok.text}; units: "
                    + ", ".join(u for u in units.UNITS if u.isascii()),
                )
            return OperandSite(Constant(float(tok.text)), tok.offset, tok.text, None)
        if tok.kind == "word" and tok.text not in KEYWORDS:
            return OperandSite(self.resolve(tok), tok.offset, tok.text)
        raise ConditionSyntaxError(
            tok.offset, f"expected a feature, a threshold or a number, got {_describe(tok)}"
        )

    def resolve(self, tok: Token) -> Operand:
        name = tok.text
        if name in self.features:
            return FeatureRef(name)
        if name in self.thresholds:
            return ThresholdRef(name)
        self.unknown.append((tok.offset, unknown_name_message(name, self.features, self.thresholds)))
        return FeatureRef(name)


def unknown_name_message(name: str, features: Collection[str], thresholds: Collection[str]) -> str:
    """``unknown name 'tbx'; features: ...; thresholds: ...`` with a close match if any."""
    msg = f"unknown name {name!r} in condition"
    if name.lower() in KEYWORDS:
        return f"{msg}; keywords are lower case: {name.lower()!r}"
    close = difflib.get_close_matches(name, list(features) + list(thresholds), n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    msg += f"; features: {', '.join(sorted(features)) or 'none'}"
    msg += f"; thresholds: {', '.join(sorted(thresholds)) or 'none'}"
    return msg


def parse_condition(
    text: str, features: Collection[str] = (), thresholds: Collection[str] = ()
) -> ParsedCondition:
    """Parse ``text`` with names resolved against ``features`` and ``thresholds``.

    Never raises for a bad condition: problems are in ``.issues`` as (offset, message).
    """
    try:
        parser = _Parser(text, features, thresholds)
        cond = parser.parse()
    except ConditionSyntaxError as exc:
        return ParsedCondition(text, None, [], [(exc.offset, exc.message)])
    return ParsedCondition(text, cond, parser.compares, parser.unknown)


def iter_compares(cond: Condition, negated: bool = False) -> Iterator[tuple[Compare, bool]]:
    """Every comparison in ``cond`` with whether an odd number of ``not`` applies to it."""
    if isinstance(cond, Compare):
        yield cond, negated
    elif isinstance(cond, (And, Or)):
        for item in cond.items:
            yield from iter_compares(item, negated)
    elif isinstance(cond, Not):
        yield from iter_compares(cond.item, not negated)
    elif isinstance(cond, Sustained):
        yield from iter_compares(cond.item, negated)


def reward_direction(compare: Compare, threshold: str, negated: bool = False) -> tuple[str, str | None] | None:
    """For a comparison of a feature with ``threshold``: ("below"|"above", feature name).

    ``tbr < goal`` and ``goal > tbr`` -> ("below", "tbr"); a ``not`` flips the direction.
    None when the comparison does not involve the threshold.
    """
    left, right, op = compare.left, compare.right, compare.op
    if isinstance(right, ThresholdRef) and right.name == threshold:
        other, below = left, op in ("<", "<=")
    elif isinstance(left, ThresholdRef) and left.name == threshold:
        other, below = right, op in (">", ">=")
    else:
        return None
    if negated:
        below = not below
    feature = other.name if isinstance(other, FeatureRef) else None
    return ("below" if below else "above"), feature


def to_text(cond: Condition) -> str:
    """Canonical text of a condition, fully parenthesised where precedence matters (for reports)."""

    def operand(o: Operand) -> str:
        return f"{o.value:g}" if isinstance(o, Constant) else o.name

    if isinstance(cond, Compare):
        return f"{operand(cond.left)} {cond.op} {operand(cond.right)}"
    if isinstance(cond, And):
        return " and ".join(f"({to_text(i)})" if isinstance(i, Or) else to_text(i) for i in cond.items)
    if isinstance(cond, Or):
        return " or ".join(to_text(i) for i in cond.items)
    if isinstance(cond, Not):
        inner = to_text(cond.item)
        return f"not {inner}" if isinstance(cond.item, (Compare, Not, Sustained)) else f"not ({inner})"
    if isinstance(cond, Sustained):
        inner = to_text(cond.item)
        if not isinstance(cond.item, Compare):
            inner = f"({inner})"
        return f"{inner} for {units.format_quantity(cond.duration_s, units.DURATION)}"
    raise TypeError(f"not a condition: {cond!r}")

"""Denominations of the native coin (whitepaper Appendix J): icon, micoin, uicon, nicoin; and of the bridged stable
asset: usdt, uusdt (micro-usdt, the chain's unit)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from racenet.chain.scalars import MAX_AMOUNT

NICOIN_PER = {"icon": 10**9, "micoin": 10**6, "uicon": 10**3, "nicoin": 1}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$")


def parse_amount(text: str) -> int:
    """nicoin from text like `2icon`, `1.5micoin`, `300uicon` or `42` (plain = nicoin)."""
    m = _AMOUNT.match(text.lower())
    if not m:
        raise ValueError(f"invalid amount {text!r}: use a number and a unit, e.g. 2.5icon or 1000nicoin")
    number, unit = m.group(1), m.group(2) or "nicoin"
    if unit not in NICOIN_PER:
        raise ValueError(f"unknown unit {unit!r}: one of {', '.join(NICOIN_PER)}")
    try:
        value = Decimal(number) * NICOIN_PER[unit]
    except InvalidOperation as e:
        raise ValueError(f"invalid amount {text!r}") from e
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of nicoin")
    if value > MAX_AMOUNT:
        raise ValueError(f"{text!r} is more than the largest amount, {format_amount(MAX_AMOUNT)}")
    return int(value)


def format_amount(nicoin: int) -> str:
    """A readable amount in icon, exact to the nicoin (e.g. `1.5 icon`)."""
    whole, frac = divmod(nicoin, NICOIN_PER["icon"])
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return f"{text} icon"


USDT_PER = {"usdt": 10**6, "uusdt": 1}


def parse_usdt(text: str) -> int:
    """micro-usdt from text like `12.5usdt` or `300uusdt` (plain = micro-usdt)."""
    m = _AMOUNT.match(text.lower())
    if not m or (m.group(2) or "uusdt") not in USDT_PER:
        raise ValueError(f"invalid usdt amount {text!r}: use a number and a unit, e.g. 12.5usdt or 300uusdt")
    value = Decimal(m.group(1)) * USDT_PER[m.group(2) or "uusdt"]
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of micro-usdt")
    if value > MAX_AMOUNT:
        raise ValueError(f"{text!r} is more than the largest amount")
    return int(value)


def format_usdt(micro: int) -> str:
    """A readable amount in usdt, exact to the micro-usdt (e.g. `12.5 usdt`)."""
    whole, frac = divmod(micro, USDT_PER["usdt"])
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{text} usdt"

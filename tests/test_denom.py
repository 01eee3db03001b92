"""Amounts in icon, micoin, uicon and nicoin (1 icon = 10**9 nicoin)."""

from __future__ import annotations

import pytest

from racenet.chain.modules.bank.denom import format_amount, parse_amount


@pytest.mark.parametrize(
    "text, nicoin",
    [
        ("1icon", 10**9),
        ("2.5 icon", 2_500_000_000),
        ("3micoin", 3_000_000),
        ("7uicon", 7_000),
        ("42", 42),
        ("42nicoin", 42),
        ("0.000000001icon", 1),
        ("1ICON", 10**9),
    ],
)
def test_parse(text: str, nicoin: int) -> None:
    assert parse_amount(text) == nicoin


@pytest.mark.parametrize("text", ["", "icon", "-1icon", "1.5nicoin", "1e3", "1 btc", "0.0000000001icon"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_format() -> None:
    assert format_amount(1_500_000_000) == "1.5 icon"
    assert format_amount(1) == "0.000000001 icon"
    assert format_amount(0) == "0 icon"
    assert format_amount(10**18) == "1000000000 icon"

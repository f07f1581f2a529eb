"""fitsscan's card-value parser against astropy's, card by card."""

from __future__ import annotations

import pytest
from astropy.io import fits as afits

from ergo_ray.io.fitsscan import ScanHeader

VALUES = [
    "'it''s'", "'a / b  '   / comment / with slash", "''", "'  '", "'x'''", "''''",
    "'O''Hara''s' / c", "T", "F", "-42", "+7 / seven", "1.5E-03", "2.0D+02", "-0.25d1",
    "'NaN'", "'MASK    '", "'IMAGE'", "123456789012345678", "1.",
]


@pytest.mark.parametrize("value", VALUES)
def test_values_parse_as_astropy_parses_them(value):
    card = f"{'KEY':8}= {value:>20}".ljust(80)
    want = afits.Card.fromstring(card).value
    got = ScanHeader({"KEY": card[10:]}).get("KEY")
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("value", ["'abc''", "'abc", "'"])
def test_unterminated_strings_keep_their_text(value):
    # astropy warns and repairs such a card; the scanner keeps the text (and the readers'
    # structural keywords never hold one), as before the regex parser
    assert ScanHeader({"KEY": f" {value}  "}).get("KEY") == value

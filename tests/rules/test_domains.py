import pytest

from carepath.rules.domains import email_domain, normalise_domain, normalise_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Mixed.Case@Helios-Energy.GR ", "mixed.case@helios-energy.gr"),
        ("eleni@Ελλάδα.GR", "eleni@xn--hxakic4aa.gr"),
        ("eleni@xn--hxakic4aa.gr", "eleni@xn--hxakic4aa.gr"),
        ("a@b.example.", "a@b.example"),
    ],
)
def test_normalise_email(raw, expected) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "@helios.gr", "a b@helios.gr", "a@", "a@-bad-.gr"])
def test_not_an_address(raw) -> None:
    with pytest.raises(ValueError):
        normalise_email(raw)


def test_domains() -> None:
    assert normalise_domain(" HELIOS-energy.gr ") == "helios-energy.gr"
    assert email_domain("x@Ελλάδα.gr") == normalise_domain("ελλάδα.GR")

"""Layout record: products and divisibility are checked, bad values are ConfigErrors."""
import pytest

from archsim.errors import ConfigError
from archsim.mapping.layout import Layout


def test_valid_layouts():
    assert Layout.single() == Layout(devices=1, tp=1, ep=1, dp=1, pp=1)
    lay = Layout(devices=16, tp=8, ep=16, dp=2)
    assert lay.describe() == "16 devices (tp 8, ep 16, dp 2, pp 1)"


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(devices=8, tp=4), r"tp\*dp\*pp == devices"),
    (dict(devices=8, tp=8, ep=3), r"divisor of tp\*dp"),
    (dict(devices=0), "positive integer"),
    (dict(devices=2, tp=2, dp=True), "positive integer"),
])
def test_bad_layouts(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Layout(**kwargs)

"""Troponin I limits are never applied to a troponin T result."""

import pytest

from cardiovlm.tools.quant.troponin import TroponinMarkerError, interpret_troponin


def test_troponin_i_is_read_against_the_abbott_limits():
    result = interpret_troponin(20, "ng/L", "female")
    assert result.above_url and result.url_ng_l == 15.6


@pytest.mark.parametrize(("value", "unit", "sex"), [(80, "ng/L", "female"), (0.01, "ng/mL", "male")])
def test_troponin_t_is_refused_with_a_coded_message(value, unit, sex):
    with pytest.raises(TroponinMarkerError) as err:
        interpret_troponin(value, unit, sex, marker="T")
    assert err.value.code == "troponin.marker_unknown"
    assert "troponin T" in str(err.value) and "not read against" in str(err.value)

"""options.py: the checks every command shares name the flag, and the worker count never exceeds the usable cores."""
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.options import available_cores, check_whole, is_real, workers_for


@pytest.mark.parametrize("value", [0, -1, 1.0, "3", True, None, 11])
def test_check_whole_refuses_with_the_flag_and_the_bounds(value):
    with pytest.raises(MedsearchError, match=r"^--folds must be a whole number between 1 and 10, got "):
        check_whole("--folds", value, 1, 10)


def test_check_whole_accepts_whole_numbers_in_range():
    for value in (1, 10, np.int64(5)):
        check_whole("--folds", value, 1, 10)
    check_whole("--seed", 10**12, 0)


def test_is_real():
    assert is_real(0.5) and is_real(np.float32(2)) and is_real(3)
    assert not any(is_real(v) for v in (True, float("nan"), float("inf"), "1", None))


def test_workers_never_exceed_the_usable_cores():
    cores = available_cores()
    assert cores >= 1
    assert workers_for(None) == cores and workers_for(1) == 1 and workers_for(10**6) == cores and workers_for(0) == 1

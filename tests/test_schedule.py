"""Learning-rate schedules."""

import pytest

from spd_core.config import ScheduleConfig
from spd_core.train.schedule import scheduled_value


def test_warmup_is_linear_from_zero():
    s = ScheduleConfig(start_val=1.0, warmup_pct=0.1, fn_type="constant")
    assert [scheduled_value(i, 100, s) for i in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]


def test_cosine_midpoint_and_end():
    s = ScheduleConfig(start_val=2.0, fn_type="cosine", final_val_frac=0.0)
    assert scheduled_value(0, 101, s) == pytest.approx(2.0)
    assert scheduled_value(50, 101, s) == pytest.approx(1.0)
    assert scheduled_value(100, 101, s) == pytest.approx(0.0, abs=1e-12)


def test_two_step_linear_goes_one_to_zero():
    s = ScheduleConfig(start_val=1.0, fn_type="linear", final_val_frac=0.0)
    assert [scheduled_value(i, 2, s) for i in range(2)] == [1.0, 0.0]


def test_final_value_reached_at_last_step():
    s = ScheduleConfig(start_val=1.0, fn_type="cosine", final_val_frac=0.1, warmup_pct=0.2)
    assert scheduled_value(99, 100, s) == pytest.approx(0.1)


def test_constant_schedule_cannot_decay():
    with pytest.raises(ValueError, match="constant"):
        ScheduleConfig(fn_type="constant", final_val_frac=0.5)

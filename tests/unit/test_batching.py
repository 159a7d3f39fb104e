"""How a batch is cut into runs for networks planned at fixed batch sizes."""

import pytest

from services.core.batching import power_of_two_runs


@pytest.mark.parametrize(("count", "largest", "runs"), [
    (0, 8, []),
    (1, 8, [1]),
    (5, 8, [4, 1]),
    (7, 8, [4, 2, 1]),
    (8, 8, [8]),
    (20, 8, [8, 8, 4]),
    (77, 64, [64, 8, 4, 1]),
])
def test__a_batch_runs_as_powers_of_two_no_larger_than_the_largest_run_and_no_padding(count, largest, runs):
    assert power_of_two_runs(count, largest) == runs
    assert sum(runs) == count


@pytest.mark.parametrize(("count", "largest"), [(-1, 8), (5, 0), (5, 6)])
def test__a_negative_count_or_a_largest_run_that_is_not_a_power_of_two_is_refused(count, largest):
    with pytest.raises(ValueError, match="power of two"):
        power_of_two_runs(count, largest)

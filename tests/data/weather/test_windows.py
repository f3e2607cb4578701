"""Training windows and time splits."""

import numpy as np
import pytest

from keras_sphere.data.weather import ChannelLayout
from keras_sphere.data.weather import WeatherWindows
from keras_sphere.data.weather import compute_normalization
from keras_sphere.data.weather import split_by_time
from keras_sphere.sphere import Grid

GRID = Grid(9, 16)


def layout():
    return ChannelLayout.from_variables(
        ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind"],
        (500, 850),
    )


def test_windows_hold_the_next_states_normalised(weather):
    dataset = weather.random_dataset(GRID, n_time=12)
    stats = compute_normalization(dataset, layout(), GRID)
    windows = WeatherWindows(dataset, stats, steps=3, batch_size=4, shuffle=False)
    assert windows.num_windows == 9 and len(windows) == 3
    state, targets = windows[1]
    assert state.shape == (4, 9, 16, 8) and targets.shape == (4, 3, 9, 16, 8)
    fields = stats.normalize(layout().stack(dataset))
    np.testing.assert_array_equal(state[0], fields[4])
    np.testing.assert_array_equal(targets[0], fields[5:8])
    state, targets = windows[2]  # the last, partial batch
    assert state.shape[0] == 1
    with pytest.raises(IndexError):
        windows[3]
    windows.set_steps(1)
    assert windows.num_windows == 11 and windows[0][1].shape[1] == 1
    with pytest.raises(ValueError, match="between 1 and 11"):
        windows.set_steps(12)


def test_shuffling_is_seeded_per_epoch_and_covers_every_window(weather):
    dataset = weather.random_dataset(GRID, n_time=12)
    stats = compute_normalization(dataset, layout(), GRID)
    a = WeatherWindows(dataset, stats, steps=2, batch_size=3, seed=1)
    b = WeatherWindows(dataset, stats, steps=2, batch_size=3, seed=1)
    np.testing.assert_array_equal(a._order, b._order)
    first = a._order.copy()
    a.on_epoch_end()
    assert sorted(a._order) == sorted(first) == list(range(10))
    assert not np.array_equal(a._order, first)


def test_splits_are_ordered_blocks_with_gaps(weather):
    dataset = weather.random_dataset(GRID, n_time=60)  # 15 days of 6-hourly states
    splits = split_by_time(dataset, (0.6, 0.2, 0.2), gap="1D")
    times = {name: split["time"].values for name, split in splits.items()}
    assert sum(t.size for t in times.values()) == 60 - 2 * 4
    gap = np.timedelta64(1, "D")
    assert times["validation"][0] - times["train"][-1] > gap
    assert times["test"][0] - times["validation"][-1] > gap
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_time(dataset, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="cannot hold"):
        split_by_time(dataset, gap="30D")


def test_start_epoch_sets_order_and_curriculum_steps(weather):
    dataset = weather.random_dataset(GRID, n_time=12)
    stats = compute_normalization(dataset, layout(), GRID)
    windows = WeatherWindows(
        dataset, stats, batch_size=2, seed=3, curriculum=lambda epoch: 1 + epoch
    )
    assert windows.steps == 1
    windows.start_epoch(2)
    assert windows.steps == 3 and windows[0][1].shape[1] == 3
    resumed = WeatherWindows(
        dataset, stats, batch_size=2, seed=3, curriculum=lambda epoch: 1 + epoch
    )
    resumed.start_epoch(2)  # a run restarted at epoch 2 sees the same batches
    np.testing.assert_array_equal(resumed._order, windows._order)


def test_short_epochs_walk_through_whole_passes(weather):
    dataset = weather.random_dataset(GRID, n_time=12)
    stats = compute_normalization(dataset, layout(), GRID)
    windows = WeatherWindows(dataset, stats, batch_size=2, seed=5, steps_per_epoch=2)
    assert len(windows) == 2 and windows.batches_per_pass == 6
    seen = []
    for epoch in range(3):  # three short epochs = one pass of 11 windows
        windows.start_epoch(epoch)
        for index in range(len(windows)):
            state = windows[index][0]
            seen += [
                int(
                    np.argmin(
                        np.abs(
                            stats.normalize(layout().stack(dataset))[:, 0, 0, 0]
                            - s[0, 0, 0]
                        )
                    )
                )
                for s in state
            ]
    assert sorted(seen) == list(range(11))

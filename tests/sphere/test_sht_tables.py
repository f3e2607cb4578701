"""Latitude tables: built block by block, streamed, cached on disk, with progress."""

import numpy as np
import pytest

from keras_sphere.sphere import sht_tables
from keras_sphere.sphere.sht_tables import _layout
from keras_sphere.sphere.sht_tables import _table_shapes
from keras_sphere.sphere.sht_tables import iter_tables


@pytest.fixture
def small_disk_cache(tmp_path, monkeypatch):
    """Cache every table on disk, in a fresh directory."""
    monkeypatch.setenv("KERAS_SPHERE_CACHE", str(tmp_path))
    monkeypatch.setattr(sht_tables, "_DISK_CACHE_MIN_BYTES", 0)
    return tmp_path


@pytest.mark.parametrize(
    "n_lat, ell_max, spin, exact", [(16, 7, 0, False), (9, 7, 1, True)]
)
def test_streamed_tables_are_the_float64_tables_cast(n_lat, ell_max, spin, exact):
    # Cast block by block or all at the end: the same float32 values, exactly.
    layout = _layout(n_lat, ell_max, spin)
    whole = [t.astype(np.float32) for t in sht_tables._build_tables(layout, exact)]
    streamed = list(iter_tables(layout, exact, np.float32))
    assert [t.shape for t in streamed] == _table_shapes(layout)
    for got, want in zip(streamed, whole, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_disk_cache_is_written_while_streaming_and_read_back(small_disk_cache):
    layout = _layout(16, 7, 0)
    built = list(iter_tables(layout, False, np.float32))
    (path,) = small_disk_cache.glob("sht_tables_*.npz")
    assert not list(small_disk_cache.glob("*.tmp"))
    with np.load(path) as stored:  # the np.savez format
        assert len(stored.files) == len(built)
    read = list(iter_tables(layout, False, np.float32))
    for got, want in zip(read, built, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_reader_that_stops_early_leaves_no_cache_file(small_disk_cache):
    tables = iter_tables(_layout(16, 7, 0), False, np.float32)
    next(tables)
    tables.close()
    assert not list(small_disk_cache.iterdir())


def test_a_corrupted_cache_file_is_rebuilt(small_disk_cache):
    layout = _layout(16, 7, 1)
    built = list(iter_tables(layout, False, np.float32))
    (path,) = small_disk_cache.glob("sht_tables_*.npz")
    path.write_bytes(path.read_bytes()[:200])  # truncated
    again = list(iter_tables(layout, False, np.float32))
    for got, want in zip(again, built, strict=True):
        np.testing.assert_array_equal(got, want)
    with np.load(path) as stored:  # rewritten whole
        assert len(stored.files) == len(built)


def test_large_builds_and_reads_report_progress(small_disk_cache, monkeypatch, capsys):
    monkeypatch.setattr(sht_tables, "_PROGRESS_MIN_BYTES", 0)
    layout = _layout(16, 7, 0)
    list(iter_tables(layout, False, np.float32))
    err = capsys.readouterr().err
    assert "Building SHT tables for 16 rows, L = 7, spin 0" in err
    assert f"cached in {small_disk_cache}" in err
    list(iter_tables(layout, False, np.float32))
    assert "Reading SHT tables for 16 rows" in capsys.readouterr().err
    monkeypatch.setattr(sht_tables, "_PROGRESS_MIN_BYTES", 2**40)
    list(iter_tables(layout, False, np.float32))
    assert capsys.readouterr().err == ""  # small tables: silent

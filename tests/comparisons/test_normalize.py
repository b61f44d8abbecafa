"""The normaliser (names, dtypes, order) and the comparator (exact ints, rtol floats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from taskbench.comparisons.normalize import RTOL, AnswerError, checksum, compare, normalize
from taskbench.comparisons.queries import QUERIES

Q01, Q02, Q04, Q09, Q11, Q12 = (QUERIES[q] for q in ("q01", "q02", "q04", "q09", "q11", "q12"))


def test_float_coded_nullable_keys_become_Int64_sorted_nulls_last():
    raw = pd.DataFrame({"payment_type": [2.0, np.nan, 1.0], "count": [5.0, 1.0, 7.0]})
    out = normalize(raw, Q01)
    assert list(out.dtypes.astype(str)) == ["Int64", "int64"]
    assert out["payment_type"].tolist()[:2] == [1, 2] and out["payment_type"].isna().iloc[2]
    assert out["count"].tolist() == [7, 5, 1]
    assert isinstance(out.index, pd.RangeIndex)


def test_group_keys_in_the_index_are_moved_to_columns():
    raw = pd.Series([3, 4], index=pd.Index([2, 1], name="payment_type"), name="count")
    assert normalize(raw, Q01)["payment_type"].tolist() == [1, 2]


def test_engine_made_names_are_replaced_by_position():
    raw = pd.DataFrame({"payment_type": [1], "count(1)": [3]})
    assert list(normalize(raw, Q01).columns) == ["payment_type", "count"]


def test_arrow_and_nullable_dtypes_are_accepted():
    raw = pd.DataFrame(
        {
            "passenger_count": pd.array([1, None], dtype="Int32"),
            "avg_total_amount": pd.array([1.5, None], dtype=pd.ArrowDtype(pa.float64())),
        }
    )
    out = normalize(raw, Q02)
    assert str(out["avg_total_amount"].dtype) == "float64"
    assert np.isnan(out["avg_total_amount"].iloc[1])


def test_wrong_columns_are_an_answer_error():
    with pytest.raises(AnswerError, match="columns"):
        normalize(pd.DataFrame({"a": [1], "b": [2], "c": [3]}), Q01)
    with pytest.raises(AnswerError, match="DataFrame"):
        normalize([1, 2], Q01)


def test_fractional_integer_is_an_answer_error():
    with pytest.raises(AnswerError, match=r"distance: expected integers, got 2\.7"):
        normalize(
            pd.DataFrame({"passenger_count": [1], "year": [2015], "distance": [2.7], "count": [1]}),
            Q04,
        )


def test_null_where_none_may_be_is_an_answer_error():
    with pytest.raises(AnswerError, match="column count: 1 null"):
        normalize(pd.DataFrame({"payment_type": [1], "count": [np.nan]}), Q01)


def test_big_integers_stay_exact():
    raw = pd.DataFrame({"payment_type": [1], "count": [2**53 + 1]})
    assert normalize(raw, Q01)["count"].iloc[0] == 2**53 + 1


def test_string_keys_are_objects_with_none():
    raw = pd.DataFrame(
        {"borough": pd.array(["Queens", None, "Bronx"], dtype="str"), "count": [1, 2, 3],
         "avg_fare_amount": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    out = normalize(raw, Q09)
    assert out["borough"].dtype == object
    assert out["borough"].tolist() == ["Bronx", "Queens", None]


def test_zoned_timestamps_become_naive_utc_and_descending_order_is_kept():
    raw = pd.DataFrame(
        {
            "trip_id": [5, 3, 4],
            "tpep_pickup_datetime": pd.to_datetime(
                ["2015-01-01 01:00", "2015-01-01 02:00", "2015-01-01 03:00"]
            ).tz_localize("Europe/Paris"),
            "total_amount": [10.0, 20.0, 20.0],
        }
    )
    out = normalize(raw, Q11)
    assert out["trip_id"].tolist() == [3, 4, 5]  # total DESC, then trip_id
    assert str(out["tpep_pickup_datetime"].dtype) == "datetime64[us]"
    assert out["tpep_pickup_datetime"].iloc[2] == pd.Timestamp("2015-01-01 00:00")


def test_q04_is_sorted_by_its_spec_order():
    raw = pd.DataFrame(
        {"passenger_count": [1, 2, 1, None], "year": [2016, 2015, 2015, 2015],
         "distance": [1, 1, 3, 2], "count": [9, 5, 5, 7]}
    )  # fmt: skip
    out = normalize(raw, Q04)
    assert out["count"].tolist() == [7, 5, 5, 9]  # year, count DESC, passenger_count, distance
    assert out["passenger_count"].tolist()[1:] == [1, 2, 1]


def _q12(values):
    return normalize(pd.DataFrame({"PULocationID": range(len(values)), "avg_gap_s": values}), Q12)


def test_floats_agree_within_the_relative_tolerance_and_nan_equals_nan():
    expected = _q12([1000.0, np.nan, 0.0])
    assert compare(expected, _q12([1000.0 * (1 + RTOL / 2), np.nan, 1e-12]), Q12) is None
    mismatch = compare(expected, _q12([1000.0 * (1 + RTOL * 2), np.nan, 0.0]), Q12)
    assert (mismatch.row, mismatch.column) == (0, "avg_gap_s")
    assert compare(expected, _q12([1000.0, 5.0, 0.0]), Q12).row == 1


def test_integers_are_exact_and_the_first_differing_cell_is_reported():
    expected = normalize(pd.DataFrame({"payment_type": [1, 2, 3], "count": [10, 20, 30]}), Q01)
    got = normalize(pd.DataFrame({"payment_type": [1, 2, 3], "count": [10, 21, 31]}), Q01)
    mismatch = compare(expected, got, Q01)
    assert (mismatch.row, mismatch.column, mismatch.expected, mismatch.got) == (1, "count", 20, 21)
    assert str(mismatch) == "row 1, column count: expected 20, got 21"


def test_a_null_key_against_a_value_is_a_difference():
    expected = normalize(pd.DataFrame({"payment_type": [1, None], "count": [1, 2]}), Q01)
    got = normalize(pd.DataFrame({"payment_type": [1, 0], "count": [1, 2]}), Q01)
    assert "column payment_type" in str(compare(expected, got, Q01))


def test_missing_and_extra_rows_are_named():
    expected = normalize(pd.DataFrame({"payment_type": [1, 2, None], "count": [1, 2, 3]}), Q01)
    dropped_null = expected.iloc[:2]
    message = str(compare(expected, dropped_null, Q01))
    assert message == "expected 3 rows, got 2; first missing row: payment_type=None"
    assert "first extra row" in str(compare(dropped_null, expected, Q01))
    shifted = normalize(pd.DataFrame({"payment_type": [2, None], "count": [2, 3]}), Q01)
    assert "first difference at row 0, column payment_type" in str(compare(expected, shifted, Q01))


def test_checksum_is_stable_across_float_noise_and_changes_with_values():
    a = _q12([1.0, 2.0])
    assert checksum(a, Q12) == checksum(_q12([1.0 + 1e-12, 2.0]), Q12)
    assert checksum(a, Q12) != checksum(_q12([1.0, 2.5]), Q12)

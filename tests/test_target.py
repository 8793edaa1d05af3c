"""Target loading: validation messages, class selection, stratified limits, the cache key."""

from __future__ import annotations

import numpy as np
import pytest

from zooindex.errors import TargetError
from zooindex.readers import Dataset
from zooindex.target import Target, load_target, parse_classes


def images(n=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4), dtype=np.uint8)


# -- parse_classes -------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0-4", [0, 1, 2, 3, 4]),
    ("3,7,9", [3, 7, 9]),
    ("cat,dog", ["cat", "dog"]),
    ("0-2,7", [0, 1, 2, 7]),
    (" 3 , 7-8 ", [3, 7, 8]),
    ("t-shirt,bag", ["t-shirt", "bag"]),  # a hyphen between words is not a range
    ("2,2,1-2", [2, 1]),                  # duplicates dropped, first occurrence kept
    ("-1,5", [-1, 5]),
])
def test_parse_classes(text, expected):
    assert parse_classes(text) == expected


@pytest.mark.parametrize("text,message", [("", "empty"), ("1,,2", "empty item"),
                                          ("5-2", "runs backwards; write 2-5")])
def test_parse_classes_errors(text, message):
    with pytest.raises(TargetError, match=message):
        parse_classes(text)


# -- validation ----------------------------------------------------------------------------

def test_arrays_become_codes_over_sorted_original_values():
    y = np.array([30, 10, 20, 10, 30, 20])
    target = load_target(x=images(6), y=y)
    assert isinstance(target, Target) and target.source == "<arrays>"
    assert target.classes == (10, 20, 30)
    assert target.y.tolist() == [2, 0, 1, 0, 2, 1]
    assert target.y.dtype == np.int64 and len(target) == 6
    assert all(type(c) is int for c in target.classes)


def test_string_labels_and_whole_floats():
    target = load_target(x=images(4), y=np.array(["dog", "cat", "dog", "cat"]))
    assert target.classes == ("cat", "dog") and target.y.tolist() == [1, 0, 1, 0]
    target = load_target(x=images(4), y=np.array([1.0, 2.0, 1.0, 2.0]))
    assert target.classes == (1, 2)
    column = load_target(x=images(4), y=np.array([[0], [1], [0], [1]]))  # (N, 1) labels
    assert column.y.tolist() == [0, 1, 0, 1]


def test_bool_inputs_become_uint8():
    x = np.array([[True, False], [False, True], [True, True], [False, False]])
    target = load_target(x=x, y=[0, 0, 1, 1])
    assert target.x.dtype == np.uint8 and target.x.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]


def test_nan_is_reported_with_its_sample_index():
    x = np.zeros((6, 3))
    x[4, 1] = np.nan
    with pytest.raises(TargetError, match="inputs contain NaN or inf at sample 4"):
        load_target(x=x, y=[0, 1, 0, 1, 0, 1])
    x[4, 1] = 0.0
    x[5, 0] = np.inf
    with pytest.raises(TargetError, match="inputs contain NaN or inf at sample 5"):
        load_target(x=x, y=[0, 1, 0, 1, 0, 1])


def test_nan_index_refers_to_the_original_sample_after_class_selection():
    x = np.zeros((6, 2))
    x[5] = np.nan  # sample 5 has class 2; classes 1 and 2 keep samples 1, 2, 4, 5
    with pytest.raises(TargetError, match="at sample 5 "):
        load_target(x=x, y=[0, 1, 2, 0, 1, 2], classes=[1, 2])


def test_length_mismatch_names_both_lengths():
    with pytest.raises(TargetError, match="has 12 inputs but 11 labels"):
        load_target(x=images(12), y=np.arange(11) % 2)


@pytest.mark.parametrize("x,message", [
    # strings (N,) or (N, 2) are texts (tests/test_text_target.py); other shapes are not
    (np.array([[["a"]], [["b"]]]), "dtype <U1"),
    (np.array([[{}], [{}]], dtype=object), "dtype object"),
    (np.zeros((0, 3)), "has no samples"),
])
def test_inputs_must_be_numeric_and_present(x, message):
    with pytest.raises(TargetError, match=message):
        load_target(x=x, y=np.zeros(len(x)))


@pytest.mark.parametrize("y,message", [
    (np.array([0.5, 1.0, 0.0, 1.0]), "label 0.5 at sample 0 .* not a class label"),
    (np.array([0, 1, np.nan, 1]), "label nan at sample 2"),
    (np.eye(4), r"shape \(4, 4\).*one-hot\? pass labels.argmax\(1\)"),
    (np.array([0, 1.5j, 0, 1]), "dtype complex128"),
    (np.array([0, None, 1, 1], dtype=object), "label None"),
])
def test_labels_must_be_class_labels(y, message):
    with pytest.raises(TargetError, match=message):
        load_target(x=images(4), y=y)


def test_at_least_two_classes():
    with pytest.raises(TargetError, match=r"has 1 class \(7\); ranking needs at least 2 classes"):
        load_target(x=images(4), y=[7, 7, 7, 7])


def test_every_class_needs_two_samples():
    with pytest.raises(TargetError, match="class 2 has 1 sample; every class needs at least 2"):
        load_target(x=images(5), y=[0, 0, 1, 1, 2])


def test_either_source_or_arrays():
    assert not load_target(x=images(4)).labeled  # inputs alone: an unlabeled target
    with pytest.raises(TargetError, match="need x="):
        load_target(y=[0, 1, 0, 1])
    with pytest.raises(TargetError, match="not both"):
        load_target("data.npz", x=images(4), y=[0, 1, 0, 1])
    with pytest.raises(TargetError, match="no target given"):
        load_target()


# -- classes -------------------------------------------------------------------------------

def test_classes_keep_a_subset_by_original_value():
    y = np.array([0, 1, 2, 3] * 3)
    target = load_target(x=images(12), y=y, classes="1,3")
    assert target.classes == (1, 3)
    assert target.y.tolist() == [0, 1] * 3
    # the kept inputs are rows 1, 3, 5, 7, 9, 11 of the original
    np.testing.assert_array_equal(target.x, images(12)[1::2])


def test_classes_by_string_label_and_by_name():
    y = np.array(["a", "b", "c"] * 2)
    assert load_target(x=images(6), y=y, classes=["c", "a"]).classes == ("a", "c")
    named = Dataset(x=images(6), y=np.array([0, 1, 2] * 2), class_names=("cat", "dog", "eel"),
                    source="pets")
    target = load_target(named, classes="cat,eel")
    assert target.classes == (0, 2) and target.class_names == ("cat", "eel")
    assert load_target(named).class_names == ("cat", "dog", "eel")


def test_missing_class_lists_the_present_ones():
    named = Dataset(x=images(6), y=np.array([0, 1, 2] * 2), class_names=("cat", "dog", "eel"),
                    source="pets")
    with pytest.raises(TargetError, match=r"class 'emu' is not in target 'pets'; present: "
                                          r"0 \(cat\), 1 \(dog\), 2 \(eel\)"):
        load_target(named, classes=["emu"])
    with pytest.raises(TargetError, match="class 9 is not in target '<arrays>'; present: 0, 1"):
        load_target(x=images(4), y=[0, 1, 0, 1], classes=[0, 9])


def test_one_class_kept_is_too_few():
    with pytest.raises(TargetError, match="at least 2 classes"):
        load_target(x=images(4), y=[0, 1, 0, 1], classes=[1])


# -- limit ---------------------------------------------------------------------------------

def unbalanced(n0=300, n1=200, n2=100):
    y = np.repeat([0, 1, 2], [n0, n1, n2])
    x = np.arange(len(y), dtype=np.float64)[:, None]  # each input remembers its position
    return x, y


def test_limit_is_stratified_and_seeded():
    x, y = unbalanced()
    a = load_target(x=x, y=y, limit=60, seed=3)
    # 300:200:100 out of 600 -> 30:20:10 out of 60
    assert np.bincount(a.y).tolist() == [30, 20, 10]
    again = load_target(x=x, y=y, limit=60, seed=3)
    np.testing.assert_array_equal(a.x, again.x)
    assert a.key == again.key
    other = load_target(x=x, y=y, limit=60, seed=4)
    assert not np.array_equal(a.x, other.x) and a.key != other.key
    # samples stay in their original order
    assert np.all(np.diff(a.x[:, 0]) > 0)


def test_limit_at_or_above_the_size_keeps_everything():
    x, y = unbalanced(3, 2, 2)
    full = load_target(x=x, y=y)
    for limit in (7, 100):
        same = load_target(x=x, y=y, limit=limit, seed=5)
        np.testing.assert_array_equal(same.x, x)
        assert same.key == full.key  # the same samples, so the same cached results


def test_limit_dropping_fewer_samples_than_classes():
    # 10 classes of 3..12 samples; dropping 2 of 75 takes one each from the two largest
    y = np.repeat(np.arange(10), np.arange(3, 13))
    x = np.arange(len(y), dtype=np.float64)[:, None]
    target = load_target(x=x, y=y, limit=len(y) - 2)
    counts = np.bincount(target.y)
    assert counts.tolist() == list(range(3, 11)) + [10, 11]


def test_limit_too_small_for_the_classes():
    x, y = unbalanced()
    with pytest.raises(TargetError, match="--limit 5 is too small for 3 classes.* --limit 6"):
        load_target(x=x, y=y, limit=5)
    with pytest.raises(TargetError, match="positive number"):
        load_target(x=x, y=y, limit=0)


def test_limit_that_leaves_a_class_with_one_sample():
    # 98:2 -> at limit 10 the small class gets round(0.2) = 0 samples
    y = np.repeat([0, 1], [98, 2])
    with pytest.raises(TargetError, match="after --limit 10, class 1 has 0 samples.*raise --limit"):
        load_target(x=np.zeros((100, 1)), y=y, limit=10)


# -- key -----------------------------------------------------------------------------------

def test_key_is_sha256_and_stable():
    a = load_target(x=images(), y=np.arange(12) % 3)
    b = load_target(x=images().copy(), y=list(np.arange(12) % 3))
    assert a.key == b.key and len(a.key) == 64 and int(a.key, 16) >= 0


def test_key_of_a_memory_map_equals_that_of_the_array(tmp_path):
    x = images()
    path = tmp_path / "x.bin"
    x.tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=x.shape)
    y = np.arange(12) % 3
    assert load_target(x=mapped, y=y).key == load_target(x=x, y=y).key


def test_key_changes_with_inputs_labels_and_options():
    x, y = images(), np.arange(12) % 3
    base = load_target(x=x, y=y).key
    changed = x.copy()
    changed[5, 2, 2] ^= 1
    assert load_target(x=changed, y=y).key != base
    assert load_target(x=x.astype(np.float32), y=y).key != base  # same values, other dtype
    assert load_target(x=x.reshape(12, 16), y=y).key != base     # same bytes, other shape
    assert load_target(x=x, y=(y + 1) % 3).key != base
    assert load_target(x=x, y=y * 10).key != base                # same codes, other values
    assert load_target(x=x, y=y, classes=[0, 1]).key != base
    assert load_target(x=x, y=y, limit=9, seed=0).key != base
    assert load_target(x=x, y=y, limit=9, seed=0).key != load_target(x=x, y=y, limit=9,
                                                                     seed=1).key
    assert load_target(x=x, y=y, limit=9).key != load_target(x=x, y=y, limit=6).key


def test_non_contiguous_inputs_hash_like_their_copy():
    x = np.asfortranarray(np.random.default_rng(1).random((10, 3)))
    y = np.arange(10) % 2
    assert load_target(x=x, y=y).key == load_target(x=np.ascontiguousarray(x), y=y).key


# -- from files ----------------------------------------------------------------------------

def test_load_from_a_path_with_split(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=images(6), y_train=[0, 1, 2] * 2, x_test=images(4, 1),
             y_test=["a", "b"] * 2)
    test = load_target(path)
    assert test.classes == ("a", "b") and test.source == str(path)
    train = load_target(str(path), split="train", classes="0-1")
    assert train.classes == (0, 1) and len(train) == 4

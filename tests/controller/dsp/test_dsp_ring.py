"""Ring buffer: wraparound, oversize writes and contiguous windows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dsp import RingBuffer


def test_wraparound_keeps_newest_samples_in_order():
    ring = RingBuffer(2, 5)
    data = np.arange(24, dtype=float).reshape(2, 12)
    for a, b in [(0, 3), (3, 7), (7, 8), (8, 12)]:  # the second and fourth writes wrap
        ring.write(data[:, a:b])
    np.testing.assert_array_equal(ring.latest(5), data[:, 7:12])
    np.testing.assert_array_equal(ring.latest(2), data[:, 10:12])
    assert ring.count == 12


def test_window_is_a_contiguous_view_without_copy():
    ring = RingBuffer(3, 8)
    ring.write(np.ones((3, 6)))
    ring.write(np.full((3, 5), 2.0))  # wraps
    w = ring.latest(8)
    assert w.base is not None  # a view into the ring's storage
    assert w.strides[1] == w.itemsize  # unit stride in time within each row
    np.testing.assert_array_equal(w, np.c_[np.ones((3, 3)), np.full((3, 5), 2.0)])


def test_write_longer_than_capacity_keeps_the_tail():
    ring = RingBuffer(1, 4)
    ring.write(np.array([[1.0, 2.0]]))
    ring.write(np.arange(10.0)[None, :])
    np.testing.assert_array_equal(ring.latest(4), [[6.0, 7.0, 8.0, 9.0]])
    ring.write(np.array([[10.0]]))
    np.testing.assert_array_equal(ring.latest(4), [[7.0, 8.0, 9.0, 10.0]])


def test_requests_beyond_capacity_or_history_are_refused():
    ring = RingBuffer(1, 4)
    ring.write(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="capacity 4"):
        ring.latest(5)
    with pytest.raises(ValueError, match="only 2 were written"):
        ring.latest(3)


def test_reset_forgets_history():
    ring = RingBuffer(1, 3)
    ring.write(np.ones((1, 3)))
    ring.reset()
    assert ring.count == 0
    ring.write(np.array([[5.0]]))
    np.testing.assert_array_equal(ring.latest(1), [[5.0]])


def test_zero_length_write_is_a_no_op():
    ring = RingBuffer(2, 3)
    ring.write(np.arange(4.0).reshape(2, 2))
    ring.write(np.empty((2, 0)))
    assert ring.count == 2
    np.testing.assert_array_equal(ring.latest(2), [[0.0, 1.0], [2.0, 3.0]])


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 17),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=25),
)
def test_any_sequence_of_writes_matches_the_concatenated_stream(capacity, sizes):
    ring = RingBuffer(2, capacity)
    total = sum(sizes)
    stream = np.arange(2 * total, dtype=float).reshape(2, total)
    pos = 0
    for n in sizes:
        ring.write(stream[:, pos : pos + n])
        pos += n
        for length in {1, min(capacity, pos)} if pos else ():
            np.testing.assert_array_equal(ring.latest(length), stream[:, pos - length : pos])

"""Pure logic of the query service: tensor codec, importance views, bearer check, store names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.serving.auth import check_bearer
from services.serving.catalog import name_stores
from services.serving.errors import RequestError
from services.serving.importance_selection import Selection, select
from spd_client.generated.spd.v1 import tensor_pb2 as pb
from spd_client.tensor_codec import TensorDecodeError, from_proto, to_proto


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", "<f2", "<i4", ">i8"])
def test_round_trip_keeps_values_shape_and_sends_little_endian(dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    message = to_proto(array)
    assert list(message.shape) == [2, 3, 4]
    assert message.data == array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    decoded = from_proto(message)
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable and decoded.dtype.isnative


def test_decode_rejects_byte_counts_that_do_not_fit_the_shape():
    message = pb.Tensor(shape=[2, 5], dtype=pb.DTYPE_FLOAT32, data=b"\0" * 12)
    with pytest.raises(
        TensorDecodeError, match="12 bytes but shape \\[2, 5\\] of float32 needs 40"
    ):
        from_proto(message)


def test_decode_rejects_unset_dtype_and_negative_shapes():
    with pytest.raises(TensorDecodeError, match="DTYPE_UNSPECIFIED is not supported"):
        from_proto(pb.Tensor(shape=[1], data=b"\0" * 4))
    with pytest.raises(TensorDecodeError, match="negative"):
        from_proto(pb.Tensor(shape=[-1], dtype=pb.DTYPE_INT32))


def test_encode_names_the_dtypes_it_can_send():
    with pytest.raises(TypeError, match="complex64 cannot be sent"):
        to_proto(np.zeros(2, np.complex64))


CI = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.0, 0.2]])


def test_top_k_is_largest_first_with_component_indices():
    values, indices = select(CI, Selection("top_k", k=2))
    np.testing.assert_array_equal(indices, [[1, 2], [0, 2]])
    np.testing.assert_allclose(values, [[0.9, 0.5], [0.7, 0.2]])
    values, _ = select(CI, Selection("top_k", k=9))
    assert values.shape == (2, 3)


def test_threshold_returns_coordinates_in_row_major_order():
    values, indices = select(CI, Selection("threshold", threshold=0.4))
    np.testing.assert_array_equal(indices, [[0, 1], [0, 2], [1, 0]])
    np.testing.assert_allclose(values, [0.9, 0.5, 0.7])


def test_dense_is_the_whole_tensor():
    values, indices = select(CI, Selection())
    assert indices is None
    np.testing.assert_array_equal(values, CI.numpy())


def test_bearer_token_check():
    check_bearer([], None)
    check_bearer([("authorization", "Bearer abc")], "abc")
    check_bearer([("Authorization", b"bearer abc")], "abc")
    for metadata in ([], [("authorization", "Bearer abd")], [("authorization", "Basic abc")]):
        with pytest.raises(RequestError) as info:
            check_bearer(metadata, "abc")
        assert info.value.code.name == "UNAUTHENTICATED"


def test_store_names_from_paths_or_given():
    assert name_stores(["runs/a.zarr", "b=/data/x.zarr/", "s3://bucket/c.zarr"]) == {
        "a": "runs/a.zarr",
        "b": "/data/x.zarr/",
        "c": "s3://bucket/c.zarr",
    }
    with pytest.raises(ValueError, match="two stores are named 'a'"):
        name_stores(["x/a.zarr", "y/a.zarr"])


def test_token_inputs_outside_the_vocabulary_are_refused_before_the_model():
    """An out-of-range id would fail inside the embedding (INTERNAL); it is the caller's error."""
    from services.serving.validation import decode_inputs
    from spd_core.queries import io_signature

    spec = {"kind": "toy", "spec": {"kind": "induction", "seq_len": 3, "vocab_size": 8}}
    signature = io_signature(spec)
    good = np.array([[0, 7, 3]], dtype=np.int64)
    torch.testing.assert_close(
        decode_inputs(to_proto(good), True, signature, 4, ""), torch.from_numpy(good)
    )
    for bad in ([[0, 8, 1]], [[0, 1, 2], [3, -1, 0]]):
        with pytest.raises(RequestError, match=r"token ids outside \[0, 8\) \(first at input"):
            decode_inputs(to_proto(np.array(bad, dtype=np.int64)), True, signature, 4, "")

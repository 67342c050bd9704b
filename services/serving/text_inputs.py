"""A request's model input: a tensor batch for toy decompositions, or one token sequence (text
tokenized on the server, or token ids) for language models. Refusals say what to send instead."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import invalid
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_core.text.tokens import TextInputError, check_token_ids, encode_text, token_strings


class InputRequest(Protocol):
    """The input fields ComputeImportancesRequest and AblateRequest share."""

    decomposition: str
    inputs: tensor_pb2.Tensor
    text: str
    token_ids: pb.TokenIds

    def HasField(self, field_name: str) -> bool: ...


def request_input(
    request: InputRequest, catalog: Catalog, max_inputs: int, hint: str
) -> tuple[Tensor, pb.Tokens | None]:
    """(model input, tokens): inputs (N, *input_shape) and None for a toy decomposition; token
    ids (1, seq) and their strings for a language model (whose model this loads)."""
    name = request.decomposition
    sent = [
        field
        for field, present in (
            ("inputs", request.HasField("inputs")),
            ("text", bool(request.text)),
            ("token_ids", request.HasField("token_ids")),
        )
        if present
    ]
    if len(sent) > 1:
        raise invalid(f"send one of inputs, text or token_ids, not {' and '.join(sent)}")
    signature = catalog.signature(name)
    if signature is not None:
        if sent and sent[0] != "inputs":
            raise invalid(
                f"decomposition {name!r} is not a language model, so it takes no {sent[0]}: send "
                f"inputs, a Tensor of shape {['N', *signature.input_shape]}"
            )
        return validation.decode_inputs(
            request.inputs, bool(sent), signature, max_inputs, hint
        ), None
    spec = catalog.store(name).target_spec
    if not sent or sent[0] == "inputs":
        what = "an inputs Tensor" if sent else "no input"
        raise invalid(
            f"decomposition {name!r} is a language model ({spec.get('model')}), and the request "
            "has " + what + ": send text (tokenized on the server) or token_ids"
        )
    tokenizer = catalog.load(name).tokenizer
    context = spec.get("context_length")
    try:
        if sent[0] == "text":
            ids = encode_text(tokenizer, request.text, context)
        else:
            ids = list(request.token_ids.ids)
        batch = check_token_ids(ids, int(spec["vocab_size"]), context)
    except TextInputError as err:
        raise invalid(str(err) if sent[0] == "text" else f"token_ids: {err}") from None
    return batch, pb.Tokens(ids=ids, strings=token_strings(tokenizer, ids))

"""XLNet permutation language modelling with two-stream attention."""


import keras
import numpy as np
from keras import ops

from ptft_keras.layers import TiedOutput
from ptft_keras.objectives.base import Pretrainer


# --- XLNet permutation language modelling -------------------------------------------------------
def permutation_masks(is_real, rng, num_predict):
    """Masks of one sequence for a random factorization order (1 = may attend).

    is_real: (S,) bool, False on padding. Only real tokens are permuted; padding is never
    attended to and never predicted. Returns a dict:

    - ``order`` (n,): positions in factorization order; ``rank`` (S,): each position's place
      in it (padding: S).
    - ``content_mask`` (S, S): i attends to j iff rank[j] <= rank[i] (earlier and itself).
      Padding rows attend to themselves only (keeps their softmax finite; nobody reads them).
    - ``query_mask`` (S, S): rank[j] < rank[i], strictly: the query stream of i knows i's
      position but not its token, which is what it must predict.
    - ``target_positions`` (K,): the last K = min(num_predict, n - 1) positions of the order
      (partial prediction: the first-in-order token has no context, so K < n).
    """
    is_real = np.asarray(is_real, bool)
    length = len(is_real)
    positions = np.flatnonzero(is_real)
    order = rng.permutation(positions)
    rank = np.full(length, length)
    rank[order] = np.arange(len(order))
    earlier_or_same = rank[None, :] <= rank[:, None]
    content = earlier_or_same & is_real[None, :]
    content |= np.diag(~is_real)
    query = (rank[None, :] < rank[:, None]) & is_real[None, :]
    num_targets = min(num_predict, max(len(order) - 1, 0))
    return {
        "order": order,
        "rank": rank,
        "content_mask": content.astype("float32"),
        "query_mask": query.astype("float32"),
        "target_positions": order[len(order) - num_targets :],
    }


def permutation_lm_arrays(token_ids, padding_mask, rng, num_predict):
    """One epoch of XLNet permutation-LM inputs for token ids (N, S) and padding mask (N, S).

    Returns ``(x, y, sample_weight)``: x = {token_ids, segment_ids, padding_mask (N, S),
    content_mask, query_mask (N, S, S), target_mapping (N, K, S)}, y = target ids (N, K),
    weights (N, K) (0 where a short sequence has fewer than K targets). ``target_mapping[k]``
    is the one-hot position of the k-th prediction, in factorization order.
    """
    token_ids = np.asarray(token_ids, "int32")
    padding_mask = np.asarray(padding_mask).astype(bool)
    n, length = token_ids.shape
    content = np.zeros((n, length, length), "float32")
    query = np.zeros((n, length, length), "float32")
    mapping = np.zeros((n, num_predict, length), "float32")
    targets = np.zeros((n, num_predict), "int32")
    weights = np.zeros((n, num_predict), "float32")
    for row in range(n):
        masks = permutation_masks(padding_mask[row], rng, num_predict)
        content[row], query[row] = masks["content_mask"], masks["query_mask"]
        where = masks["target_positions"]
        mapping[row, np.arange(len(where)), where] = 1.0
        targets[row, : len(where)] = token_ids[row, where]
        weights[row, : len(where)] = 1.0
    x = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": padding_mask.astype("int32"),
        "content_mask": content,
        "query_mask": query,
        "target_mapping": mapping,
    }
    return x, targets, weights



@keras.saving.register_keras_serializable(package="ptft_keras")
class PermutationLMPretrainer(Pretrainer):
    """XLNet permutation language modelling with two-stream attention.

    Reuses every weight of a keras-hub ``XLNetBackbone`` (so the pre-trained backbone is then
    fine-tuned as is): its word embedding, its ``mask_emb`` vector (the query stream's initial
    state g: a position with no content), and its ``XLNetEncoder`` layers, whose relative
    attention already runs the two streams when given a query stream, a query mask and a
    target mapping. What the backbone lacks, and this model adds: the permutation masks as
    inputs, the query stream, and the LM head.

    inputs (see ``permutation_lm_arrays``): token_ids, segment_ids, padding_mask (B, S),
    content_mask, query_mask (B, S, S), target_mapping (B, K, S).
    output: logits (B, K, V) for the K target positions, from the query stream.

    Per layer: h <- Attn(Q = h, KV = h, content_mask)  (sees itself);
               g <- Attn(Q = g, KV = h, query_mask)    (sees only earlier-in-order content).
    """

    def __init__(self, backbone, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        self.lm_head = TiedOutput(backbone.content_query_embedding.word_embed, name="lm_head")
        # XLNetBackbone overwrites its ``dropout`` layer attribute with the rate (a float).
        self.query_dropout = keras.layers.Dropout(backbone.dropout)

    def _relative_positions(self, batch, length):
        """(B, 2S, H) sinusoidal encodings of relative distances S, S-1, ..., -S+1.

        Computed with the backbone's own function, then transposed: the backbone's ``call``
        reshapes (2S, B, H) to (B, 2S, H) instead of transposing it, which scrambles the
        encodings of every sequence after the first when B > 1 (keras-hub 0.32).
        """
        embedding = self.backbone.content_query_embedding
        encoding = embedding.relative_positional_encoding(length, length, bsz=batch)
        return ops.transpose(encoding, (1, 0, 2))
        self._compile_on_construction(compile)

    def call(self, inputs, training=False):
        backbone = self.backbone
        token_ids = inputs["token_ids"]
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        mapping = ops.cast(inputs["target_mapping"], self.compute_dtype)
        content = backbone.content_query_embedding.dropout_layer(
            backbone.content_query_embedding.word_embed(token_ids), training=training
        )
        mask_emb = ops.cast(backbone.attn_mask_layer.mask_emb, content.dtype)
        query = ops.broadcast_to(mask_emb, (batch, ops.shape(mapping)[1], backbone.hidden_dim))
        positions = self._relative_positions(batch, length)
        segments = backbone.seg_mat_layer(inputs["segment_ids"])
        for layer in backbone.transformer_layers:
            content, query = layer(
                output_content=content,
                attn_mask_content=inputs["content_mask"],
                attn_mask_query=inputs["query_mask"],
                pos_emb=positions,
                seg_mat=segments,
                output_query=query,
                target_mapping=mapping,
            )
        query = self.query_dropout(query, training=training)
        return self.lm_head(query)



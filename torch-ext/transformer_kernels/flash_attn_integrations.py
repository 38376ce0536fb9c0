"""flash_attn behind the attention hooks of transformers and diffusers.

- :func:`flash_attention_forward` has the signature of transformers' attention interface
  functions (``transformers.integrations.sdpa_attention.sdpa_attention_forward`` and the other
  entries of ``ALL_ATTENTION_FUNCTIONS``)::

      from transformers import AttentionInterface
      AttentionInterface.register("transformer_kernels", flash_attention_forward)
      model = AutoModelForCausalLM.from_pretrained(..., attn_implementation="transformer_kernels")

- :class:`FlashAttnProcessor` is a diffusers attention processor, the counterpart of
  ``diffusers.models.attention_processor.AttnProcessor2_0``::

      pipe.transformer.set_attn_processor(FlashAttnProcessor())

Neither takes an attention mask (pack variable-length batches instead) or attention dropout.
Inputs must be float16 or bfloat16 on a GPU (float32 works for CPU tensors).
"""

import torch

from .flash_attn import flash_attn, flash_attn_varlen


def flash_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    is_causal: bool | None = None,
    softcap: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention for a transformers model: query [B, Hq, Sq, D], key and value [B, Hk, Sk, D]
    (grouped-query heads are used as they are, not repeated) -> (attn_output [B, Sq, Hq, D],
    None), like transformers' own attention functions.

    ``is_causal`` None means ``module.is_causal`` (True when the module has none); causal is
    aligned to the bottom right, as in transformers' FlashAttention-2 path. ``sliding_window``
    w allows keys within w - 1 positions on each side (window (w - 1, w - 1), combined with the
    causal mask). ``scaling`` None means 1 / sqrt(D). Packed batches (B == 1) given by
    transformers' ``cu_seq_lens_q``, ``cu_seq_lens_k``, ``max_length_q``, ``max_length_k``
    keyword arguments run as variable-length attention.

    Raises ValueError for an attention_mask (padding masks are not supported), dropout > 0,
    softcap and attention sinks (s_aux).
    """
    op = "flash_attention_forward"
    if attention_mask is not None:
        raise ValueError(f"{op}: attention_mask is not supported (got a tensor of shape "
                         f"{list(attention_mask.shape)}); pass None, and pack padded batches "
                         f"into variable-length sequences (cu_seq_lens_q/cu_seq_lens_k)")
    if dropout:
        raise ValueError(f"{op}: attention dropout is not supported, got dropout={dropout}")
    if softcap is not None:
        raise ValueError(f"{op}: softcap is not supported, got softcap={softcap}")
    if kwargs.get("s_aux") is not None:
        raise ValueError(f"{op}: attention sinks (s_aux) are not supported")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    window = (-1, -1) if sliding_window is None else (sliding_window - 1, sliding_window - 1)
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))

    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is not None and cu_k is not None:
        if q.shape[0] != 1:
            raise ValueError(f"{op}: packed sequences (cu_seq_lens_q) need batch size 1, got "
                             f"{q.shape[0]}")
        out = flash_attn_varlen(
            q[0], k[0], v[0], cu_q.to(torch.int32), cu_k.to(torch.int32),
            int(kwargs["max_length_q"]), int(kwargs["max_length_k"]), causal=bool(is_causal),
            softmax_scale=scaling, window=window,
        )
        return out.unsqueeze(0), None
    return flash_attn(q, k, v, causal=bool(is_causal), softmax_scale=scaling, window=window), None


class FlashAttnProcessor:
    """diffusers attention processor computing ``Attention`` with flash_attn: the same steps as
    ``AttnProcessor2_0`` (spatial norm, group norm, q/k/v projections, q/k norms, output
    projection and dropout, residual, rescale), with F.scaled_dot_product_attention replaced.

    Like AttnProcessor2_0 it uses the default scale 1 / sqrt(head_dim) and no causal mask.
    Key/value projections narrower than the query's (kv_heads < heads) run as grouped-query
    attention. Raises ValueError when given an attention_mask.
    """

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("FlashAttnProcessor: attention_mask is not supported; use "
                             "AttnProcessor2_0 for masked attention")
        residual = hidden_states
        if getattr(attn, "spatial_norm", None) is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if getattr(attn, "group_norm", None) is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif getattr(attn, "norm_cross", None):
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        # [B, S, heads, head_dim] is flash_attn's layout: no transposes.
        head_dim = query.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim)
        key = key.view(batch, -1, key.shape[-1] // head_dim, head_dim)
        value = value.view(batch, -1, value.shape[-1] // head_dim, head_dim)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        hidden_states = flash_attn(query, key, value)
        hidden_states = hidden_states.reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if getattr(attn, "residual_connection", False):
            hidden_states = hidden_states + residual
        return hidden_states / getattr(attn, "rescale_output_factor", 1.0)


__all__ = ["FlashAttnProcessor", "flash_attention_forward"]

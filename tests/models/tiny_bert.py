"""A tiny BERT-like sentence embedder (2 layers, 4 heads of 8, hidden 32, vocabulary 100), randomly
initialised (seeded), wrapped like examples/minilm.py: ``forward(input_ids, attention_mask)`` -> the
mean-pooled, L2-normalised last hidden state. No download."""
from __future__ import annotations

SEQ_LEN = 16
VOCAB = 100


def build():
    import torch
    from transformers import BertConfig, BertModel

    class SentenceEmbedding(torch.nn.Module):  # as examples/minilm.py wraps all-MiniLM-L6-v2
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            x = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
            return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True).clamp_min(1e-12))

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=SEQ_LEN, attn_implementation="eager")
    module = SentenceEmbedding(BertModel(cfg)).eval()
    ids = torch.randint(1, VOCAB, (1, SEQ_LEN))
    return module, {"input_ids": ids, "attention_mask": torch.ones(1, SEQ_LEN, dtype=torch.int64)}

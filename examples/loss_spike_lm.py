"""The model and data of ``loss_spike_lm.yaml``: a small causal transformer language model, at the
character level, on a corpus generated here from a probabilistic grammar (nothing downloaded).

``corpus(...)`` returns ``(train, val)``. The training set reads a different seeded permutation
of its windows each epoch (``set_epoch``, with ``training.data.shuffle: false``: the harness
keeps that order), and in one epoch a contiguous burst of batches is corrupted: their targets
are random characters. Only that burst is, the once: a long run that meets a bad stretch of its
corpus mid-run, the case PaLM describes (spikes tied to particular batches; skipping them healed).
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

__all__ = ["VOCAB", "CharLM", "EpochStream", "char_lm", "corpus", "sentences"]

VOCAB = "abcdefghijklmnopqrstuvwxyz .,;?!"  # 32 characters; the grammar uses 22 of them
_WORDS = {
    "det": ["the", "a", "one", "every", "that"],
    "adj": ["small", "red", "quick", "old", "green", "quiet", "brave"],
    "noun": ["cat", "dog", "bird", "fox", "man", "girl", "horse", "tree", "river"],
    "verb": ["sees", "finds", "likes", "chases", "hears", "follows"],
    "prep": ["near", "by", "under", "over"],
    "adv": ["slowly", "today", "again", "quietly"],
}


def _phrase(rng: random.Random) -> str:
    words = [rng.choice(_WORDS["det"])]
    if rng.random() < 0.5:
        words.append(rng.choice(_WORDS["adj"]))
    words.append(rng.choice(_WORDS["noun"]))
    return " ".join(words)


def sentences(count: int, seed: int) -> str:
    """``count`` sentences of the grammar (subject, verb, object, an optional place and adverb)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = [_phrase(rng), rng.choice(_WORDS["verb"]), _phrase(rng)]
        if rng.random() < 0.4:
            parts += [rng.choice(_WORDS["prep"]), _phrase(rng)]
        if rng.random() < 0.3:
            parts.append(rng.choice(_WORDS["adv"]))
        out.append(" ".join(parts) + rng.choice([".", ".", ".", "!", "?"]))
    return " ".join(out)


def _windows(text: str, count: int, context: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` windows of ``context + 1`` characters at seeded offsets: inputs and next characters."""
    ids = torch.tensor([VOCAB.index(c) for c in text], dtype=torch.int64)
    starts = torch.randint(0, len(ids) - context - 1, (count,), generator=torch.Generator().manual_seed(seed))
    rows = torch.stack([ids[s: s + context + 1] for s in starts.tolist()])
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


class EpochStream(TensorDataset):
    """Training windows read in a seeded order of their own each epoch (``set_epoch``, the
    convention of torch's ``DistributedSampler``); in ``burst_epoch`` the batches
    ``burst_at .. burst_at + burst_batches - 1`` have random target characters."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, batch_size: int,
                 burst_epoch: int | None, burst_at: int, burst_batches: int) -> None:
        super().__init__(x, y)
        self.clean, self.seed = (x, y), seed
        self.burst = (burst_epoch, burst_at * batch_size, (burst_at + burst_batches) * batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Put epoch ``epoch``'s windows in place, in the order the harness will read them."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.clean[0]), generator=gen)
        x, y = self.clean[0][order], self.clean[1][order]
        burst_epoch, start, stop = self.burst
        if epoch == burst_epoch:
            y[start:stop] = torch.randint(0, len(VOCAB), y[start:stop].shape, generator=gen)
        self.tensors = (x, y)


def corpus(context: int = 48, train_windows: int = 6400, val_windows: int = 1024, batch_size: int = 32,
           burst_epoch: int | None = None, burst_at: int = 100, burst_batches: int = 6,
           seed: int = 0) -> tuple[EpochStream, TensorDataset]:
    """``(train, val)`` windows of generated text; ``batch_size`` must be ``training.batch_size``
    for the burst to cover whole batches. ``burst_epoch`` None: a clean run."""
    text_train, text_val = sentences(20_000, seed), sentences(3_000, seed + 1)
    x, y = _windows(text_train, train_windows, context, seed)
    train = EpochStream(x, y, seed, batch_size, burst_epoch, burst_at, burst_batches)
    return train, TensorDataset(*_windows(text_val, val_windows, context, seed + 1))


class _Block(nn.Module):
    """Pre-norm causal self-attention and MLP, as GPT-2."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape
        q, k, v = self.qkv(self.norm1(h)).split(w, dim=2)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, w)
        h = h + self.proj(att)
        return h + self.mlp(self.norm2(h))


class CharLM(nn.Module):
    """Token and position embeddings, ``layers`` blocks, a final norm and a linear head; logits
    come out as ``[batch, vocabulary, time]``, the ``(N, C, d1)`` form torch's cross-entropy takes."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)
        for name, p in self.named_parameters():  # GPT-2's init: N(0, 0.02), residual outputs scaled
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.norm(self.blocks(h))).transpose(1, 2)


def char_lm(context: int = 48, width: int = 64, layers: int = 2, heads: int = 4) -> CharLM:
    """The example's model over :data:`VOCAB`."""
    return CharLM(len(VOCAB), context, width, layers, heads)

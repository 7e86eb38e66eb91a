"""Weighted kNN classification on cosine similarity (Wu et al. 2018), chunked over queries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_CHUNK = 1024


def knn_scores(
    queries: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    normalized: bool = False,
) -> Tensor:
    """``(Q, num_classes)`` vote of the ``k`` most cosine-similar bank entries of each query,
    each weighted by ``exp(similarity / temperature)``. Features are L2-normalised here unless
    ``normalized`` says they already are."""
    if not normalized:
        queries = F.normalize(queries.float(), dim=1)
        bank = F.normalize(bank.float(), dim=1)
    similarity = queries @ bank.T
    top_similarity, top_index = similarity.topk(min(k, bank.shape[0]), dim=1)
    weights = (top_similarity / temperature).exp()
    scores = torch.zeros(queries.shape[0], num_classes, device=queries.device)
    return scores.scatter_add_(1, bank_labels[top_index], weights)


def knn_predict(
    queries: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Predicted label (LongTensor ``(Q,)``) of each query; memory is bounded by ``chunk_size``."""
    bank = F.normalize(bank.float(), dim=1)
    return torch.cat(
        [
            knn_scores(
                F.normalize(chunk.float(), dim=1),
                bank,
                bank_labels,
                num_classes,
                k,
                temperature,
                normalized=True,
            ).argmax(dim=1)
            for chunk in queries.split(chunk_size)
        ]
    )


def knn_topk_accuracy(
    queries: Tensor,
    query_labels: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    topk: tuple[int, ...] = (1, 5),
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[int, float]:
    """Top-``t`` accuracy for each ``t`` in ``topk`` (a query is right if its label is among the
    ``t`` highest-voted classes). ``t`` larger than ``num_classes`` counts every query right.

    The bank is normalised once; each chunk of queries is one matrix product with it, and the
    counts stay on the device until the single transfer at the end."""
    if (bank_labels < 0).any():
        raise ValueError("bank_labels holds -1: the kNN memory bank must be a labelled split")
    largest = min(max(topk), num_classes)
    bank = F.normalize(bank.float(), dim=1)
    correct = torch.zeros(len(topk), dtype=torch.long, device=bank.device)
    for chunk, labels in zip(queries.split(chunk_size), query_labels.split(chunk_size)):
        scores = knn_scores(
            F.normalize(chunk.float(), dim=1),
            bank,
            bank_labels,
            num_classes,
            k,
            temperature,
            normalized=True,
        )
        hits = scores.topk(largest, dim=1).indices == labels.to(bank.device)[:, None]
        correct += torch.stack([hits[:, :t].any(dim=1).sum() for t in topk])
    return {t: count / len(queries) for t, count in zip(topk, correct.tolist())}

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainables.knn import knn_predict, knn_scores, knn_topk_accuracy


def reference_knn_scores(queries, bank, bank_labels, num_classes, k, temperature):
    """One query at a time: sort cosine similarities, vote with exp(sim / T)."""
    rows = []
    for query in queries:
        similarities = [
            float(torch.dot(query, entry) / (query.norm() * entry.norm())) for entry in bank
        ]
        nearest = sorted(range(len(bank)), key=lambda i: -similarities[i])[:k]
        votes = [0.0] * num_classes
        for i in nearest:
            votes[int(bank_labels[i])] += math.exp(similarities[i] / temperature)
        rows.append(votes)
    return torch.tensor(rows)


def random_problem(seed, queries=20, bank=60, dim=6, classes=4):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(queries, dim, generator=generator),
        torch.randn(bank, dim, generator=generator),
        torch.randint(0, classes, (bank,), generator=generator),
        torch.randint(0, classes, (queries,), generator=generator),
    )


@given(
    seed=st.integers(0, 10_000), k=st.integers(1, 80), temperature=st.sampled_from([0.05, 0.1, 0.5])
)
def test_matches_reference_implementation(seed, k, temperature):
    queries, bank, bank_labels, _ = random_problem(seed)
    expected = reference_knn_scores(queries, bank, bank_labels, 4, k, temperature)
    scores = knn_scores(queries, bank, bank_labels, 4, k, temperature)
    assert torch.allclose(scores, expected, rtol=1e-4)
    predicted = knn_predict(queries, bank, bank_labels, 4, k, temperature)
    assert predicted.dtype == torch.long
    assert torch.equal(predicted, expected.argmax(dim=1))


def test_chunking_does_not_change_predictions():
    queries, bank, bank_labels, _ = random_problem(3, queries=101)
    whole = knn_predict(queries, bank, bank_labels, 4, k=10, chunk_size=1000)
    assert torch.equal(whole, knn_predict(queries, bank, bank_labels, 4, k=10, chunk_size=7))


def test_features_are_normalised_inside():
    queries, bank, bank_labels, _ = random_problem(4)
    scale = torch.rand(len(bank), 1) * 10 + 0.1
    assert torch.equal(
        knn_predict(queries, bank, bank_labels, 4, k=15),
        knn_predict(queries * 3, bank * scale, bank_labels, 4, k=15),
    )


def test_top1_and_top5_accuracy_against_reference():
    queries, bank, bank_labels, query_labels = random_problem(5, queries=50, classes=8)
    accuracy = knn_topk_accuracy(
        queries, query_labels, bank, bank_labels, 8, k=20, topk=(1, 5), chunk_size=16
    )
    scores = reference_knn_scores(queries, bank, bank_labels, 8, 20, 0.1)
    top1 = (scores.argmax(dim=1) == query_labels).float().mean()
    top5 = (scores.topk(5, dim=1).indices == query_labels[:, None]).any(dim=1).float().mean()
    assert accuracy[1] == pytest.approx(float(top1))
    assert accuracy[5] == pytest.approx(float(top5))
    assert accuracy[5] >= accuracy[1]


def test_separated_clusters_are_classified_perfectly():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 10
    bank_labels = torch.arange(3).repeat(50)
    bank = centres[bank_labels] + torch.randn(150, 3, generator=generator)
    query_labels = torch.arange(3).repeat(10)
    queries = centres[query_labels] + torch.randn(30, 3, generator=generator)
    accuracy = knn_topk_accuracy(queries, query_labels, bank, bank_labels, 3, k=200)
    assert accuracy[1] == 1.0 and accuracy[5] == 1.0


def test_bank_must_be_labelled():
    queries, bank, bank_labels, query_labels = random_problem(6)
    bank_labels[0] = -1
    with pytest.raises(ValueError, match="labelled split"):
        knn_topk_accuracy(queries, query_labels, bank, bank_labels, 4)

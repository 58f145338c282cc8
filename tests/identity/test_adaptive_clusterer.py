"""The adaptive clusterer end to end, its self-distillation loss and adapter training (small, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comicid.evaluation.clustering import clustering_metrics
from comicid.identity import Constraints
from comicid.identity.adaptive import AdaptiveClusterer, load_adapter, save_adapter
from comicid.identity.constraints import IdentityInputError
from comicid.losses.self_distillation import SelfDistillationLoss
from comicid.training.adapt import AdaptConfig, Adapter, apply_adapter, train_adapter

FAST = AdaptConfig(epochs=3, batch_size=32, hidden=32, projection=16, prototypes=32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def book(k: int = 8, per: int = 6, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instances of k identities with two augmented views each: (N, D), (V, N, D), labels (N,)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)))
    labels = np.repeat(np.arange(k), per)
    x = unit(centres[labels] + rng.normal(scale=0.1, size=(k * per, dim)))
    views = unit(x[None] + rng.normal(scale=1.0 / np.sqrt(dim), size=(2,) + x.shape))
    return x, views, labels


# --- loss -----------------------------------------------------------------------------------------

def test_loss_is_lowest_when_the_student_agrees_with_the_teacher() -> None:
    teacher = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    agree = SelfDistillationLoss(3)(teacher.clone(), teacher)
    disagree = SelfDistillationLoss(3)(teacher.flip(0), teacher)
    assert agree < disagree


def test_centre_tracks_the_teacher_mean_and_is_not_trained() -> None:
    loss = SelfDistillationLoss(2, center_momentum=0.5)
    teacher = torch.tensor([[2.0, 0.0], [4.0, 0.0]])
    student = torch.zeros(2, 2, requires_grad=True)
    loss(student, teacher).backward()
    assert torch.allclose(loss.center, torch.tensor([[1.5, 0.0]]))
    assert student.grad is not None and "center" not in dict(loss.named_parameters())


# --- adapter training -----------------------------------------------------------------------------

def test_adapter_starts_as_the_identity_on_normalised_features() -> None:
    features = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    assert np.allclose(apply_adapter(Adapter(16, 8), features), unit(features), atol=1e-6)


def test_training_is_deterministic_and_changes_the_adapter() -> None:
    x, views, labels = book(k=4, per=4)
    bank = np.concatenate([x[None], views]).astype(np.float32)
    valid = np.ones(bank.shape[:2], dtype=bool)
    eligible = np.ones(len(x), dtype=bool)
    first = train_adapter(bank, valid, labels, eligible, FAST)
    second = train_adapter(bank, valid, labels, eligible, FAST)
    a, b = apply_adapter(first.adapter, x), apply_adapter(second.adapter, x)
    assert np.allclose(a, b) and not np.allclose(a, x, atol=1e-4)


# --- clusterer ------------------------------------------------------------------------------------

def test_clusterer_finds_the_identities_without_a_threshold() -> None:
    x, views, labels = book()
    predicted = AdaptiveClusterer(adapt=FAST).fit_predict(x, views=views)
    scores = clustering_metrics(labels, predicted)
    assert scores["ami"] > 0.9
    assert 0.8 <= scores["pred_clusters"] / scores["true_clusters"] <= 1.25


def test_clusterer_honours_cannot_and_must_links() -> None:
    x, views, labels = book(k=3, per=4)
    constraints = Constraints(cannot_link=np.array([[0, 1]]), must_link=np.array([[2, 11]]))
    predicted = AdaptiveClusterer(adapt=FAST).fit_predict(x, constraints, views=views)
    assert predicted[0] != predicted[1] and predicted[2] == predicted[11]


def test_clusterer_works_without_views_and_with_parts() -> None:
    x, views, labels = book(k=4, per=4)
    parts = np.stack([views[0], np.full_like(x, np.nan)])  # a face for each instance, no bodies
    clusterer = AdaptiveClusterer(adapt=FAST)
    predicted = clusterer.fit_predict(x, instance_parts=parts)
    assert predicted.shape == (len(x),) and predicted.min() == 0
    assert clusterer.quality_.shape == (len(x),) and clusterer.rounds_ >= 1


def test_rerun_resumes_from_the_state_folder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, views, _ = book(k=4, per=4)
    first = AdaptiveClusterer(adapt=FAST, state_dir=tmp_path).fit_predict(x, views=views)
    import comicid.identity.adaptive.clusterer as module

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("training ran again although every round was checkpointed")

    monkeypatch.setattr(module, "train_adapter", fail)
    again = AdaptiveClusterer(adapt=FAST, state_dir=tmp_path).fit_predict(x, views=views)
    assert np.array_equal(first, again)


def test_learnt_adapter_round_trips_through_a_file(tmp_path) -> None:
    x, views, _ = book(k=4, per=4)
    clusterer = AdaptiveClusterer(adapt=FAST)
    clusterer.fit_predict(x, views=views)
    path = save_adapter(clusterer.adapter_, tmp_path / "adapter.pt")
    assert np.allclose(apply_adapter(load_adapter(path), x), apply_adapter(clusterer.adapter_, x))


def test_bad_inputs_raise_clear_errors(tmp_path) -> None:
    x, views, _ = book(k=2, per=3)
    with pytest.raises(IdentityInputError, match="views must have shape"):
        AdaptiveClusterer().fit_predict(x, views=views[:, :2])
    with pytest.raises(IdentityInputError, match="low_quality"):
        AdaptiveClusterer(low_quality="drop").fit_predict(x)  # validated in fit, as in scikit-learn
    (tmp_path / "x.pt").write_bytes(b"not a torch file")
    with pytest.raises(IdentityInputError, match="cannot read adapter"):
        load_adapter(tmp_path / "x.pt")


def test_tiny_inputs() -> None:
    assert AdaptiveClusterer().fit_predict(np.ones((1, 4))).tolist() == [0]


def test_identities_sharing_one_drawing_style_are_not_merged() -> None:
    # Every character carries the same strong "style" component (cosine ~0.8 between any two), and the
    # views scatter more than identities differ: only the centred metric keeps them apart.
    rng = np.random.default_rng(0)
    dim, k, per = 32, 6, 5
    style = unit(rng.normal(size=dim)) * 2.0
    labels = np.repeat(np.arange(k), per)
    centres = unit(rng.normal(size=(k, dim)))
    x = unit(style + centres[labels] + rng.normal(scale=0.05, size=(k * per, dim)))
    views = unit(x[None] + rng.normal(scale=0.6 / np.sqrt(dim), size=(2,) + x.shape))
    predicted = AdaptiveClusterer(adapt=FAST).fit_predict(x, views=views)
    assert clustering_metrics(labels, predicted)["ami"] > 0.9

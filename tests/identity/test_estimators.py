"""Every registered clusterer behaves as a scikit-learn estimator where that applies: clone, a
get/set_params round trip, validation in fit (not __init__), and no state carried between calls."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClusterMixin, clone

from comicid.errors import ConfigError
from comicid.identity import CLUSTERERS, Constraints, IdentityInputError, create_clusterer
from comicid.registry import Registry

FAST = {"adaptive": {"max_rounds": 1}}  # one round keeps the adaptive method within a second here
BAD = {"agglomerative": {"linkage": "single"}, "hdbscan": {"noise": "drop"}, "adaptive": {"low_quality": "drop"},
       "umap-hdbscan": {"n_neighbors": 1}, "mining": {"d_n": 0.5, "d_p": 0.9},
       "graph": {"k": 0}}


def blobs(seed: int, n_identities: int = 3, per: int = 5, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_identities, dim))
    points = np.repeat(centres, per, axis=0) + 0.15 * rng.normal(size=(n_identities * per, dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_clone_and_params_round_trip(name: str) -> None:
    estimator = create_clusterer(name, **FAST.get(name, {}))
    assert isinstance(estimator, BaseEstimator) and isinstance(estimator, ClusterMixin)
    params = estimator.get_params()
    copy = clone(estimator)
    assert copy is not estimator and type(copy) is type(estimator)
    assert copy.get_params() == params
    parameter = type(estimator).threshold_parameter
    if parameter is not None:
        changed = clone(estimator).set_params(**{parameter: 0.123})
        assert changed.get_params()[parameter] == 0.123 and estimator.get_params()[parameter] != 0.123
    again = type(estimator)(**params)
    assert again.get_params() == params


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_validation_happens_in_fit(name: str) -> None:
    estimator = create_clusterer(name, **BAD[name])  # constructing never validates (scikit-learn rule)
    assert clone(estimator).get_params() == estimator.get_params()
    with pytest.raises(IdentityInputError):
        estimator.fit_predict(blobs(0))


#: Methods whose fit compiles numba code on first use (UMAP, ~11 s a process): slow, kept out of unit runs.
JIT_COMPILED = {"umap-hdbscan"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in JIT_COMPILED else name
                                  for name in sorted(CLUSTERERS)])
def test_no_state_kept_between_calls(name: str) -> None:
    first, second = blobs(1), blobs(2, n_identities=4, per=3)
    constraints = Constraints(cannot_link=[[0, 1]])
    estimator = create_clusterer(name, **FAST.get(name, {}))
    assert not hasattr(estimator, "labels_")
    labels = estimator.fit_predict(first, constraints)
    assert labels.dtype == np.int64 and labels.shape == (len(first),)
    assert labels[0] != labels[1]  # the cannot-link holds
    np.testing.assert_array_equal(estimator.labels_, labels)
    estimator.fit_predict(second)
    np.testing.assert_array_equal(estimator.fit_predict(first, constraints), labels)
    np.testing.assert_array_equal(clone(estimator).fit_predict(first, constraints), labels)


#: scikit-learn's own estimator checks that apply. Left out, on purpose: check_fit_score_takes_y
#: (``constraints`` is the second argument), check_estimators_dtypes (it feeds all-zero rows, whose cosine
#: is undefined: refused with a clear error), and check_clustering for HDBSCAN (a quality bar on generic
#: blobs that density clustering with noise singletons need not meet).
SKLEARN_CHECKS = ("check_no_attributes_set_in_init", "check_get_params_invariance", "check_set_params",
                  "check_parameters_default_constructible", "check_estimators_overwrite_params",
                  "check_dont_overwrite_parameters", "check_fit_idempotent", "check_n_features_in",
                  "check_fit2d_1sample", "check_fit2d_1feature", "check_fit_check_is_fitted",
                  "check_estimators_nan_inf", "check_dict_unchanged", "check_estimators_pickle")


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_scikit_learn_estimator_checks_that_apply(name: str) -> None:
    from sklearn.utils import estimator_checks

    checks = SKLEARN_CHECKS + (("check_clustering",) if name != "hdbscan" else ())
    for check in checks:
        getattr(estimator_checks, check)(name, CLUSTERERS[name](**FAST.get(name, {})))


def test_constraints_come_second_and_are_checked() -> None:
    estimator = create_clusterer("agglomerative")
    with pytest.raises(IdentityInputError, match="Constraints object"):
        estimator.fit(blobs(0), np.zeros((3, 2), dtype=np.int64))  # pairs, not a Constraints object
    assert len(estimator.fit(blobs(0), np.zeros(15)).labels_) == 15  # scikit-learn's y there: ignored
    assert len(estimator.fit(blobs(0), None).labels_) == 15  # Pipeline-style fit(X, None)


def test_registry_registers_once_and_names_the_choices() -> None:
    registry: Registry = Registry("widget")

    @registry.register("a")
    def make(size: int = 1) -> int:
        return size

    assert registry.create("a", size=3) == 3
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(make)
    with pytest.raises(ConfigError, match="unknown widget 'b'; choose one of a"):
        registry.create("b")
    with pytest.raises(ConfigError, match="widget 'a'"):
        registry.create("a", colour="red")

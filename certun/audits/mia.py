r"""Membership inference on two model versions (Chen et al., CCS 2021) and the classical MIA.

**Threat** (docs/bibliography.md §11.1, erratum 9). The adversary queries the model
*before* and *after* a deletion and sees two posterior vectors for a target record;
it decides whether the record was the deleted one (member) or was never in the
training set. Certified removal does **not** defend against this: it makes the
unlearned model indistinguishable from *retraining*, and the attack works against exact
retraining too (Guo et al.'s ``b`` is shared by both versions and cancels). The defence
is a private release (:mod:`certun.release`): fresh calibrated noise on every published
model, the original included.

**Pipeline** (section 11.2, as in the reference code UnlearningLeaks@53fd5a5):

1. :func:`record_split` -- records are split into a shadow half and a target half, each
   into a positive pool (80 %, available for training) and a negative pool.
2. :func:`collect_pairs` -- for each of ``num_sets`` sets, sample ``set_size`` records from
   the positive pool and train the original model with the mechanism under audit; make
   ``deletions_per_set`` unlearned models, each deleting one random record of the set from
   the original; query the deleted record (label 1) and a random record of the negative
   pool (label 0) on both models. Shadow sets train the attack, target sets test it.
3. :func:`posterior_features` -- direct and sorted concatenation, difference, sorted
   difference (the permutation sorting ``p_o`` is applied to ``p_u``) and the Euclidean
   distance; ``basic_mia`` (``p_o`` only) is the classical MIA on one model.
4. :func:`chen_attack` -- the attack classifier (scikit-learn on the host: random forest
   by default, or decision tree / logistic regression), AUC with DeLong intervals on the
   target rows, and Chen et al.'s degradation metrics against the classical MIA:
   DegCount = fraction of target rows where the attack's confidence in the true label
   exceeds the classical MIA's, DegRate = mean difference of those confidences (section
   11.5: a mean difference, not a ratio).

**Mitigations** (section 11.6): :func:`label_only`, :func:`top_k`, :func:`temperature`
(applied to both versions' outputs) and differential privacy (the private release).

Posteriors come from logits: ``(0, x.w)`` for a binary logistic model, the head scores for
one-vs-rest (softmax over heads). Features are jit-able ``jnp`` code; the classifier and
the statistics are host-side.

References:
  M. Chen, Z. Zhang, T. Wang, M. Backes, M. Humbert, Y. Zhang, "When Machine Unlearning
  Jeopardizes Privacy", ACM CCS 2021, arXiv:2005.02205.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.audits.stats import AUC, auc_with_ci
from certun.progress import progress_bar

__all__ = [
    "FEATURES",
    "RecordSplit",
    "record_split",
    "glm_logits",
    "posteriors",
    "label_only",
    "top_k",
    "temperature",
    "posterior_features",
    "PosteriorPairs",
    "collect_pairs",
    "AttackResult",
    "chen_attack",
    "degradation",
]

#: The five two-version features and the classical (one-model) baseline.
FEATURES = ("direct_diff", "sorted_diff", "direct_concat", "sorted_concat", "l2_distance",
            "basic_mia")


class RecordSplit(NamedTuple):
    """Index pools of Chen et al.'s record split (positions into the data)."""

    shadow_positive: np.ndarray
    shadow_negative: np.ndarray
    target_positive: np.ndarray
    target_negative: np.ndarray


def record_split(n: int, *, seed: int, shadow_fraction: float = 0.5,
                 positive_fraction: float = 0.8, disjoint: bool = True) -> RecordSplit:
    """Chen et al.'s split: shadow / target halves, each 80 % positive / 20 % negative pool.

    Args:
      n: number of records.
      seed: split seed.
      shadow_fraction: fraction of records in the shadow half.
      positive_fraction: fraction of each half in its positive pool.
      disjoint: ``True`` (the paper) keeps the halves disjoint. ``False`` gives the target
        all records and lets the shadow pools be an independent split of *all* records
        (the attacker's data then overlaps the target's; use it only where data are too
        scarce for two disjoint halves -- the overlap can only help the attacker).
    """
    n = _validate.integer(n=n, minimum=8)
    sf = _validate.in_range(0.0, 1.0, shadow_fraction=shadow_fraction)
    pf = _validate.in_range(0.0, 1.0, positive_fraction=positive_fraction)
    rng = np.random.default_rng(seed)
    if disjoint:
        p = rng.permutation(n)
        k = int(round(sf * n))
        sh, tg = p[:k], p[k:]
    else:
        sh, tg = rng.permutation(n), rng.permutation(n)

    def pools(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(round(pf * idx.size))
        return np.sort(idx[:k]), np.sort(idx[k:])

    sp, sn = pools(sh)
    tp, tn = pools(tg)
    return RecordSplit(sp, sn, tp, tn)


def glm_logits(params: Any, X: Any) -> jax.Array:
    """Logits of a linear model: ``(0, x.w)`` for ``(d,)`` params, ``X W`` for ``(d, K)``."""
    W = jnp.asarray(params)
    A = jnp.asarray(X) @ W
    if W.ndim == 1:
        return jnp.stack([jnp.zeros_like(A), A], axis=-1)
    return A


def posteriors(logits: jax.Array) -> jax.Array:
    """Softmax posteriors of ``(..., C)`` logits."""
    return jax.nn.softmax(jnp.asarray(logits), axis=-1)


def temperature(logits: jax.Array, T: float) -> jax.Array:
    """Temperature scaling: softmax of ``logits / T`` (Chen et al.'s mitigation)."""
    return jax.nn.softmax(jnp.asarray(logits) / T, axis=-1)


def label_only(p: jax.Array) -> jax.Array:
    """Label-only release: the one-hot of the argmax."""
    p = jnp.asarray(p)
    return jax.nn.one_hot(jnp.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)


def top_k(p: jax.Array, k: int) -> jax.Array:
    """Top-k release: keep the ``k`` largest entries, spread the rest evenly.

    Every other entry becomes ``(1 - sum_top_k) / (C - k)`` (``launch_topk_defense``).
    ``k = 0`` is :func:`label_only`.
    """
    p = jnp.asarray(p)
    C = p.shape[-1]
    if k == 0:
        return label_only(p)
    if not 0 < k < C:
        raise _validate.ValidationError(f"k must be in 0..{C - 1} for {C} classes, got {k}")
    kth = -jnp.sort(-p, axis=-1)[..., k - 1: k]
    keep = p >= kth
    rest = (1.0 - jnp.sum(jnp.where(keep, p, 0.0), axis=-1, keepdims=True)) / jnp.maximum(
        C - jnp.sum(keep, axis=-1, keepdims=True), 1)
    return jnp.where(keep, p, rest)


def posterior_features(p_o: jax.Array, p_u: jax.Array, kind: str) -> jax.Array:
    """Chen et al.'s attack features of posterior pairs ``(N, C)`` (section 11.3).

    ``direct_diff`` ``p_o - p_u``; ``sorted_diff`` the same after sorting by ``p_o``
    (ascending; the same permutation for ``p_u``); ``direct_concat`` ``[p_o, p_u]``;
    ``sorted_concat``; ``l2_distance`` ``||p_o - p_u||``; ``basic_mia`` ``p_o`` (classical MIA).
    """
    _validate.choice(FEATURES, kind=kind)
    p_o, p_u = jnp.asarray(p_o), jnp.asarray(p_u)
    if kind == "basic_mia":
        return p_o
    if kind == "direct_diff":
        return p_o - p_u
    if kind == "direct_concat":
        return jnp.concatenate([p_o, p_u], axis=-1)
    if kind == "l2_distance":
        return jnp.linalg.norm(p_o - p_u, axis=-1, keepdims=True)
    perm = jnp.argsort(p_o, axis=-1)
    so = jnp.take_along_axis(p_o, perm, axis=-1)
    su = jnp.take_along_axis(p_u, perm, axis=-1)
    return so - su if kind == "sorted_diff" else jnp.concatenate([so, su], axis=-1)


class PosteriorPairs(NamedTuple):
    """Attack rows: logits of the original and unlearned model, and membership labels.

    Attributes:
      logits_original, logits_unlearned: ``(N, C)`` logits of the queried records.
      member: ``(N,)`` 1 for the deleted record, 0 for a never-included one.
      set_id: ``(N,)`` which training set (original model) the row comes from.
      accuracy: test accuracy of each original model on records outside its training set
        (a list, one per set), and of each unlearned model (``accuracy_unlearned``).
      accuracy_unlearned: as above for the unlearned models.
    """

    logits_original: np.ndarray
    logits_unlearned: np.ndarray
    member: np.ndarray
    set_id: np.ndarray
    accuracy: list
    accuracy_unlearned: list


def collect_pairs(unlearner: Any, X: Any, y: Any, positive: Any, negative: Any, *,
                  num_sets: int, deletions_per_set: int, set_size: int, key: jax.Array,
                  seed: int, logits: Callable[[Any, Any], jax.Array] = glm_logits,
                  labels_for_accuracy: Any | None = None, init_kwargs: dict | None = None
                  ) -> PosteriorPairs:
    """Run Chen et al.'s original/unlearned pipeline with any unlearner (section 11.2).

    For set ``s``: ``set_size`` records are sampled from ``positive`` and the original model
    is ``unlearner.params(unlearner.init(X[set], y[set], fold_in(key, s)))``; each of
    ``deletions_per_set`` unlearned models deletes one distinct random record of the set
    *from the original state* (``unlearner.unlearn(state, [j]).params``); the deleted record
    (member) and a random record of ``negative`` (non-member) are queried on both models.

    Args:
      unlearner: anything with ``init``, ``unlearn``, ``params`` (certun unlearners, the
        private release, the uncertified shortcuts).
      X: ``(N, d)`` all records (rows with ``||x|| <= 1`` for certified unlearners).
      y: ``(N,)`` their labels, in the form ``unlearner.init`` expects (``+-1`` or class
        ids).
      positive: indices of the records training sets are drawn from (the members; a
        positive pool of :func:`record_split`).
      negative: indices of the records queried as non-members (the negative pool).
      num_sets: number of training sets (original models), ``>= 1``.
      deletions_per_set: unlearned models per set, each deleting one distinct record
        (``1 <= deletions_per_set <= set_size``).
      set_size: records per training set (``2 <= set_size <= len(positive)``).
      key: base key of the mechanisms' randomness (set ``s`` folds in ``s``).
      seed: seed of the sampling of sets, deletions and negatives.
      logits: ``(params, X) -> (N, C)`` logits (default :func:`glm_logits`).
      labels_for_accuracy: labels to score accuracy against (default ``y``); ``+-1`` labels
        are compared with the sign of the binary score, class ids with the argmax.
      init_kwargs: extra keyword arguments of ``init`` (e.g. ``num_classes``).

    Returns:
      :class:`PosteriorPairs` (``2 * num_sets * deletions_per_set`` rows).
    """
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = _validate.finite_array(y=y, ndim=1)
    pos = np.asarray(positive, np.int64)
    neg = np.asarray(negative, np.int64)
    S = _validate.integer(num_sets=num_sets, minimum=1)
    U = _validate.integer(deletions_per_set=deletions_per_set, minimum=1)
    m = _validate.integer(set_size=set_size, minimum=2, maximum=int(pos.size))
    if U > m or neg.size == 0:
        raise _validate.ValidationError(
            "deletions_per_set must be <= set_size and the negative pool non-empty")
    ylab = yn if labels_for_accuracy is None else np.asarray(labels_for_accuracy)
    rng = np.random.default_rng(seed)
    lo_rows, lu_rows, mem, sid, acc, acc_u = [], [], [], [], [], []
    kw = dict(init_kwargs or {})

    def accuracy(params: Any, rows: np.ndarray) -> float:
        lg = np.asarray(logits(params, Xn[rows]))
        if lg.shape[1] == 2 and np.all(np.isin(ylab, (-1.0, 1.0))):
            pred = np.where(lg[:, 1] - lg[:, 0] >= 0, 1.0, -1.0)
        else:
            pred = np.argmax(lg, axis=1)
        return float(np.mean(pred == ylab[rows]))

    with progress_bar(S, "model pairs") as bar:  # host loop; a bar only on a terminal
        for s in range(S):
            members = rng.choice(pos, size=m, replace=False)
            state = unlearner.init(Xn[members], yn[members], jax.random.fold_in(key, s), **kw)
            p0 = unlearner.params(state)
            outside = np.setdiff1d(np.arange(Xn.shape[0]), members)
            acc.append(accuracy(p0, outside))
            dels = rng.choice(m, size=U, replace=False)
            negs = rng.choice(neg, size=U, replace=True)
            for j, nj in zip(dels, negs, strict=True):
                res = unlearner.unlearn(state, [int(j)])
                if res.params is None:
                    raise RuntimeError(
                        f"the unlearner refused a deletion ({res.certificate.reason}); choose "
                        "hyperparameters that serve single deletions")
                q = Xn[[members[j], nj]]
                lo_rows.append(np.asarray(logits(p0, q)))
                lu_rows.append(np.asarray(logits(res.params, q)))
                mem.extend([1, 0])
                sid.extend([s, s])
                acc_u.append(accuracy(res.params, outside))
            bar.advance(1)
    return PosteriorPairs(np.concatenate(lo_rows), np.concatenate(lu_rows),
                          np.asarray(mem, np.int64), np.asarray(sid, np.int64), acc, acc_u)


class AttackResult(NamedTuple):
    """Chen et al.'s attack on the target rows.

    Attributes:
      auc: feature -> :class:`~certun.audits.stats.AUC` (``basic_mia`` is the classical MIA).
      accuracy: feature -> attack accuracy at the classifier's 0.5 threshold.
      degradation_count, degradation_rate: of ``feature`` against ``basic_mia``.
      feature: the feature the degradation metrics refer to.
      classifier: the attack classifier used.
      scores: feature -> the attack's membership probability of every target row (for
        cluster-bootstrap intervals over training sets, ``target.set_id``).
    """

    auc: dict
    accuracy: dict
    degradation_count: float
    degradation_rate: float
    feature: str
    classifier: str
    scores: dict


def _classifier(kind: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if kind == "rf":
        return RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=seed)
    if kind == "dt":
        return DecisionTreeClassifier(max_leaf_nodes=10, random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def degradation(conf_attack: Any, conf_base: Any) -> tuple[float, float]:
    """Chen et al.'s DegCount and DegRate (section 11.5).

    Args:
      conf_attack: the attack's posterior on the *true* membership label of each row.
      conf_base: the classical MIA's posterior on the true label of the same rows.

    Returns:
      ``(mean(conf_attack > conf_base), mean(conf_attack - conf_base))``.
    """
    a = np.asarray(conf_attack, np.float64)
    b = np.asarray(conf_base, np.float64)
    return float(np.mean(a > b)), float(np.mean(a - b))


def chen_attack(shadow: PosteriorPairs, target: PosteriorPairs, *,
                features: Sequence[str] = FEATURES, classifier: str = "rf", seed: int = 0,
                mitigation: Callable[[jax.Array], jax.Array] = posteriors,
                degradation_feature: str = "sorted_diff", alpha: float = 0.05) -> AttackResult:
    """Train the attack on the shadow rows and evaluate it on the target rows.

    Args:
      shadow: the attacker's rows from :func:`collect_pairs` (shadow pools), to train on.
      target: the victim's rows from :func:`collect_pairs` (target pools), to evaluate on.
      features: which features to attack with (``basic_mia`` is always evaluated).
      classifier: ``"rf"`` (random forest, default), ``"dt"`` (decision tree) or ``"lr"``.
      seed: classifier seed.
      mitigation: logits -> released posteriors (``posteriors``; or e.g.
        ``lambda l: label_only(posteriors(l))``, ``lambda l: temperature(l, 4.0)``).
      degradation_feature: the feature compared with ``basic_mia`` for DegCount/DegRate.
      alpha: miss probability of the AUC intervals.
    """
    _validate.choice(("rf", "dt", "lr"), classifier=classifier)
    feats = list(dict.fromkeys(list(features) + ["basic_mia", degradation_feature]))
    for f in feats:
        _validate.choice(FEATURES, feature=f)

    def design(pp: PosteriorPairs, kind: str) -> np.ndarray:
        po = mitigation(jnp.asarray(pp.logits_original))
        pu = mitigation(jnp.asarray(pp.logits_unlearned))
        return np.asarray(posterior_features(po, pu, kind), np.float64)

    aucs: dict[str, AUC] = {}
    accs: dict[str, float] = {}
    conf: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    yt = target.member
    for f in feats:
        clf = _classifier(classifier, seed)
        clf.fit(design(shadow, f), shadow.member)
        pr = np.asarray(clf.predict_proba(design(target, f)))
        p1 = pr[:, list(clf.classes_).index(1)] if 1 in clf.classes_ else np.zeros(len(yt))
        aucs[f] = auc_with_ci(p1[yt == 1], p1[yt == 0], alpha)
        accs[f] = float(np.mean((p1 >= 0.5) == (yt == 1)))
        conf[f] = np.where(yt == 1, p1, 1.0 - p1)
        scores[f] = p1
    dc, dr = degradation(conf[degradation_feature], conf["basic_mia"])
    return AttackResult(aucs, accs, dc, dr, degradation_feature, classifier, scores)

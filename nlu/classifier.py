"""Linear heads with calibrated confidences over shared TF-IDF features.

Each head is a linear SVM (scikit-learn's `LinearSVC`). Its decision scores become
probabilities through a softmax with one temperature, fitted on out-of-fold scores so that a
confidence of 0.8 is right about 80% of the time on data the head did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

# scikit-learn is imported where a head is fitted, not at module level: parsing never needs
# it, and importing it costs seconds on a busy machine.

TEMPERATURES = np.geomspace(0.02, 5.0, 60)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


class LinearHead:
    """One classification head: `fit` returns self; fitted state ends in `_`.

    `C` is the SVM's inverse regularisation; `folds` the number of folds for the out-of-fold
    scores the temperature is fitted on; `balanced` weights classes inversely to their size.
    """

    def __init__(self, C: float = 0.5, folds: int = 3, balanced: bool = False,
                 random_state: int = 0) -> None:
        self.C = C
        self.folds = folds
        self.balanced = balanced
        self.random_state = random_state

    def _svm(self) -> Any:
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, class_weight="balanced" if self.balanced else None,
                         random_state=self.random_state)

    def _scores(self, svm: Any, X: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray(svm.decision_function(X))
        if scores.ndim == 1:  # binary: one column of scores for classes_[1]
            scores = np.column_stack([-scores / 2, scores / 2])
        return scores

    def fit(self, X: sp.csr_matrix, y: Sequence[str]) -> LinearHead:
        labels = np.asarray(y)
        svm = self._svm().fit(X, labels)
        self.classes_ = [str(c) for c in svm.classes_]
        coef, intercept = svm.coef_, svm.intercept_
        if len(self.classes_) == 2:
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_ = np.ascontiguousarray(coef.T, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.temperature_ = self._fit_temperature(X, labels)
        return self

    def _fit_temperature(self, X: sp.csr_matrix, labels: np.ndarray) -> float:
        from sklearn.model_selection import StratifiedKFold

        _, counts = np.unique(labels, return_counts=True)
        folds = min(self.folds, int(counts.min()))
        if folds < 2:
            return 1.0
        oof = np.zeros((len(labels), len(self.classes_)))
        split = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        for train, test in split.split(np.zeros(len(labels)), labels):
            svm = self._svm().fit(X[train], labels[train])
            fold_scores = self._scores(svm, X[test])
            fold_classes = [str(c) for c in svm.classes_]
            for k, c in enumerate(fold_classes):
                oof[test, self.classes_.index(c)] = fold_scores[:, k]
        truth = np.asarray([self.classes_.index(str(c)) for c in labels])
        best, best_nll = 1.0, np.inf
        for t in TEMPERATURES:
            p = softmax(oof, float(t))[np.arange(len(truth)), truth]
            nll = -np.log(np.clip(p, 1e-12, None)).mean()
            if nll < best_nll:
                best, best_nll = float(t), nll
        return best

    def predict_proba(self, X: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray(X @ self.coef_.astype(np.float64)) + self.intercept_
        return softmax(scores, self.temperature_)

    def predict(self, X: sp.csr_matrix) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(X).argmax(axis=1)]

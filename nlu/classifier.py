"""Linear heads with calibrated confidences over shared TF-IDF features.

Each head is one-vs-rest linear SVMs (scikit-learn's `LinearSVC`, one binary problem per
label). With `nb_smoothing` set, each label's SVM sees the features scaled by their naive
Bayes log-count ratio for that label (NB-SVM, Wang & Manning 2012): how much more often a
feature occurs in the label's examples than in the others', with `nb_smoothing` added to every
count and the ratio raised to `nb_power` (< 1 tempers it). The scaling is folded into the
weights, so parsing costs the same either way. Decision scores become probabilities through a
softmax with one temperature, fitted on out-of-fold scores so that a confidence of 0.8 is right
about 80% of the time on data the head did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    scores the temperature is fitted on; `balanced` weights classes inversely to their size;
    `nb_smoothing` and `nb_power` turn on the naive Bayes scaling (module docstring).
    """

    def __init__(self, C: float = 0.5, folds: int = 3, balanced: bool = False,
                 nb_smoothing: float | None = None, nb_power: float = 1.0,
                 random_state: int = 0) -> None:
        self.C = C
        self.folds = folds
        self.balanced = balanced
        self.nb_smoothing = nb_smoothing
        self.nb_power = nb_power
        self.random_state = random_state

    def _one_vs_rest(self, X: sp.csr_matrix, labels: np.ndarray
                     ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Labels, weights (features x labels) and intercepts of one SVM per label.

        Two labels need one SVM, for the second; its scores are split evenly between them.
        """
        import scipy.sparse as sp
        from sklearn.svm import LinearSVC

        classes = [str(c) for c in np.unique(labels)]
        present = X.copy()
        present.data[:] = 1.0
        weights, intercepts = [], []
        for label in classes[1:] if len(classes) == 2 else classes:
            positive = labels == label
            scale = self._nb_scale(present, positive)
            svm = LinearSVC(C=self.C, class_weight="balanced" if self.balanced else None,
                            random_state=self.random_state)
            svm.fit(X if scale is None else X @ sp.diags(scale), positive)
            weight = svm.coef_.ravel()
            weights.append(weight if scale is None else weight * scale)
            intercepts.append(float(svm.intercept_[0]))
        if len(classes) == 2:
            weights = [-weights[0] / 2, weights[0] / 2]
            intercepts = [-intercepts[0] / 2, intercepts[0] / 2]
        return classes, np.column_stack(weights), np.asarray(intercepts)

    def _nb_scale(self, present: sp.csr_matrix, positive: np.ndarray) -> np.ndarray | None:
        if self.nb_smoothing is None:
            return None
        inside = self.nb_smoothing + np.asarray(present[positive].sum(axis=0)).ravel()
        outside = self.nb_smoothing + np.asarray(present[~positive].sum(axis=0)).ravel()
        ratio = np.log((inside / inside.sum()) / (outside / outside.sum()))
        return np.asarray(np.sign(ratio) * np.abs(ratio) ** self.nb_power)

    def fit(self, X: sp.csr_matrix, y: Sequence[str]) -> LinearHead:
        labels = np.asarray(y)
        self.classes_, coef, self.intercept_ = self._one_vs_rest(X, labels)
        self.coef_ = np.ascontiguousarray(coef, dtype=np.float32)
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
            fold_classes, coef, intercept = self._one_vs_rest(X[train], labels[train])
            fold_scores = np.asarray(X[test] @ coef) + intercept
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

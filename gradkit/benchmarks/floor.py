"""The floor: a hand-written NumPy forward/backward/SGD step of the same MLP.

This is the best the NumPy backend can do (no tape, no dispatch, in-place
updates); gradkit's engine overhead is the distance to it, so every benchmark
reports gradkit's time as a ratio to this floor measured in the same run.
"""
from __future__ import annotations

import numpy as np


class NumpyMLPFloor:
    """ReLU MLP with softmax cross-entropy and plain SGD, written out by hand."""

    def __init__(self, dims: list[int], batch: int, seed: int = 0, lr: float = 0.01) -> None:
        rng = np.random.default_rng(seed)
        self.weights = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
                        for a, b in zip(dims[:-1], dims[1:])]
        self.biases = [np.zeros(b, np.float32) for b in dims[1:]]
        self.x = rng.standard_normal((batch, dims[0])).astype(np.float32)
        self.labels = rng.integers(0, dims[-1], size=batch)
        self.lr = np.float32(lr)

    def step(self) -> float:
        activations = [self.x]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = activations[-1] @ w
            h += b
            np.maximum(h, 0, out=h)
            activations.append(h)
        scores = activations[-1] @ self.weights[-1] + self.biases[-1]
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        rows = np.arange(len(self.labels))
        loss = float(-np.log(scores[rows, self.labels]).mean())
        grad = scores
        grad[rows, self.labels] -= 1
        grad /= len(self.labels)
        for i in range(len(self.weights) - 1, -1, -1):
            grad_w = activations[i].T @ grad
            grad_b = grad.sum(axis=0)
            if i > 0:
                grad = grad @ self.weights[i].T
                grad *= activations[i] > 0
            self.weights[i] -= self.lr * grad_w
            self.biases[i] -= self.lr * grad_b
        return loss

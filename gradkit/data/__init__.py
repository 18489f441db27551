"""Data for the training stack: built-in data sets, file loaders and mini-batching.

>>> import gradkit as gk
>>> X, y = gk.data.spiral()
>>> loader = gk.data.DataLoader(X, y, batch_size=100, seed=0)
>>> [xb.shape for xb, _ in loader]
[(100, 2), (100, 2), (100, 2)]
"""
from gradkit.data.datasets import DATASETS, digits, load_dataset, spiral
from gradkit.data.files import DatasetError, load_idx, load_npz
from gradkit.data.loader import DataLoader

__all__ = ["DATASETS", "DataLoader", "DatasetError", "digits", "load_dataset", "load_idx",
           "load_npz", "spiral"]

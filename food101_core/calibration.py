"""Temperature scaling (Guo et al. 2017): one number that makes the model's confidences mean what they say.

MixUp and label smoothing train a model to be under-confident; dividing its logits by a temperature T < 1 sharpens
every answer alike, so the ranking (and top-1, top-5) never changes, only how sure it says it is. T is fitted by
minimising the negative log-likelihood on photos the model never trained on (the validation split, or a small
calibration hold-out when there is none), never on the test split. Pure numpy and scipy: nothing here runs a model.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

LOW_CONFIDENCE = 0.5  # the app warns below this top probability
T_BOUNDS = (0.05, 20.0)  # beyond these a fit has gone wrong (a handful of photos, or a constant model)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """The logits up to a per-row constant (which the softmax ignores), safe for zero probabilities."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with the logits divided by `temperature`. T = 1 returns them unchanged."""
    if temperature == 1.0:
        return np.asarray(probs, np.float32)
    return np.exp(log_softmax(log_probs(probs) / temperature, axis=-1)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-log_probs(probs)[np.arange(len(labels)), labels].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in `T_BOUNDS` that minimises the NLL of `labels` under `temper(probs, T)` (searched over log T)."""
    labels = np.asarray(labels)
    logp, rows = log_probs(probs), np.arange(len(labels))

    def loss(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=-1)[rows, labels].mean())

    lo, hi = np.log(T_BOUNDS)
    return float(np.exp(minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4}).x))


def warning_rate(probs: np.ndarray, threshold: float = LOW_CONFIDENCE) -> float:
    """Share of photos whose top probability is under `threshold`: how often the app would say "not sure"."""
    return float((np.asarray(probs).max(axis=1) < threshold).mean()) if len(probs) else 0.0


def fit_report(probs: np.ndarray, labels: np.ndarray, fitted_on: str) -> dict:
    """The fitted temperature and what it did to the NLL of the photos it was fitted on (JSON-ready)."""
    t = fit_temperature(probs, labels)
    return {
        "temperature": t,
        "fitted_on": fitted_on,
        "n": len(labels),
        "nll_before": nll(probs, labels),
        "nll_after": nll(temper(probs, t), labels),
    }


NOT_CALIBRATED = {"temperature": 1.0, "fitted_on": None, "n": 0}  # no held-out photos: the raw probabilities

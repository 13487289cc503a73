"""driftline detectors: pure online statistics with explicit, versioned state.

Every detector follows river's API (``update(x)``, then read ``drift_detected``) and can be
checkpointed without pickle: ``encode(detector)`` gives deterministic bytes and
``decode(data)`` rebuilds it, raising `StateDecodeError` on anything it cannot read exactly.
"""

from detectors.adwin import ADWIN
from detectors.base import Detector, Encodable
from detectors.baseline import BaselineDrop
from detectors.binary import DDM, EDDM, HDDM_A, HDDM_W
from detectors.classification import ClassificationMetrics
from detectors.codec import decode, encode, register, registered
from detectors.distribution import CategoricalPSI, NumericPSI
from detectors.expected_accuracy import ExpectedAccuracy
from detectors.kswin import KSWIN
from detectors.page_hinkley import PageHinkley, StandardizedPageHinkley
from detectors.performance import WindowedAccuracy, WindowedMAE, WindowedRMSE
from detectors.quality import DataQualityRates
from detectors.quantiles import DDSketch, LatencyQuantile
from detectors.state import State, StateDecodeError

__all__ = [
    "ADWIN",
    "DDM",
    "EDDM",
    "HDDM_A",
    "HDDM_W",
    "KSWIN",
    "BaselineDrop",
    "CategoricalPSI",
    "ClassificationMetrics",
    "DDSketch",
    "DataQualityRates",
    "Detector",
    "Encodable",
    "ExpectedAccuracy",
    "LatencyQuantile",
    "NumericPSI",
    "PageHinkley",
    "StandardizedPageHinkley",
    "State",
    "StateDecodeError",
    "WindowedAccuracy",
    "WindowedMAE",
    "WindowedRMSE",
    "decode",
    "encode",
    "register",
    "registered",
]

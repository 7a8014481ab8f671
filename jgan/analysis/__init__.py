"""Pure analysis functions: arrays (and generators) in, arrays out, seeded.

SeFa (closed-form factorization of the style weights) and InterFaceGAN (SVM boundaries,
conditional projection, interpolation, boundary files). HiGAN (layer-wise editing with
truncation compensation, re-scoring), sampled data for boundary search, predictors. FairGen
(fair sampling from one Gaussian mixture per attribute cell).
"""

from jgan.analysis.boundaries import (
    linear_interpolate,
    load_boundary,
    project_boundary,
    save_boundary,
    train_boundary,
)
from jgan.analysis.editing import interpolate, manipulate, mix_styles, truncation_compensation
from jgan.analysis.fairgen import (
    fair_sample,
    fairness_report,
    fit_cell_gmms,
    load_gmms,
    save_gmms,
    shift_to_cells,
)
from jgan.analysis.generate import generate_data, score_codes
from jgan.analysis.hierarchy import Rescoring, rescore
from jgan.analysis.layers import parse_layers
from jgan.analysis.predictors import load_predictor, mean_color
from jgan.analysis.sefa import sefa, sefa_weight

__all__ = [
    "Rescoring",
    "fair_sample",
    "fairness_report",
    "fit_cell_gmms",
    "generate_data",
    "interpolate",
    "linear_interpolate",
    "load_boundary",
    "load_gmms",
    "load_predictor",
    "manipulate",
    "mean_color",
    "mix_styles",
    "parse_layers",
    "project_boundary",
    "rescore",
    "save_boundary",
    "save_gmms",
    "score_codes",
    "sefa",
    "sefa_weight",
    "shift_to_cells",
    "train_boundary",
    "truncation_compensation",
]

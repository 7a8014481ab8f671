"""`jgan demo`: the whole mission on one model, offline, as one HTML report.

Samples, SeFa directions, InterFaceGAN boundaries per predictor column with their accuracies,
conditional editing, HiGAN's layer ranking, inversion of held-out images and edits of them,
multi-code restoration and FairGen, on the shipped testbed model (`jgan.assets`) or any model
jgan loads. Every number shown is also in metrics.json.
"""

from jgan.demo.run import run_demo
from jgan.demo.subject import DemoSettings

__all__ = ["DemoSettings", "run_demo"]

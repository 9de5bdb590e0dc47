"""The package's main job: ShuffleNet V2 trained with each activation, compared with ReLU seed by seed.

    python -m sqish_ext.experiment          # or: sqish-experiment
    python -m sqish_ext.experiment.docs     # docs/experiments.md's tables and figure from that run

docs/experiments.md says what is measured and how. The modules: data (the images), models (the
network and the activations), training, attack, timing, runs (every training, over worker processes),
stats, report (analysis and tables), plots, studies (--studies), cli, docs.
"""

from sqish_ext.experiment.cli import main

__all__ = ["main"]

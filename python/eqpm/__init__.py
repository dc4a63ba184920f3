"""eqpm: socially-equitable public models from Python.

Generate and inspect agent populations, score any forecast by each agent's regret, train
and sweep eqpm's models in-process (and resume stopped ones), and (in :mod:`eqpm.torch`)
put eqpm's equitable loss under a PyTorch forecaster. Every configuration key of the
``eqpm`` program is a keyword argument here, with the same defaults, checks and error
messages.
"""

from __future__ import annotations

from . import _core
from ._api import Model, Population, Run, info, regrets, sweep, train

__version__: str = _core.__version__

__all__ = ["Model", "Population", "Run", "__version__", "info", "regrets", "sweep", "train"]

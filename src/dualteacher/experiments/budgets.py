"""The budgets ``dualteacher compare`` trains every method under (see :mod:`dualteacher.experiments.compare`):
``iterations``, the same number of iterations; ``time``, the training time of the reference
method's equal-iteration run. Apart from :mod:`dualteacher.experiments.compare`, which imports PyTorch, so
that the command line knows them without it."""

BUDGETS = ("iterations", "time")

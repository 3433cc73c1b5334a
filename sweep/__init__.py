"""sweep: a hyperparameter sweep service for dropout and weight decay."""

__version__ = "0.1.0"

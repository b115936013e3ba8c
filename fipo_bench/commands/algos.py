def algos():
    """List registered algorithms and their hyperparameters."""
    raise NotImplementedError("issue 2")

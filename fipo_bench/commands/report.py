def report():
    """Write comparison tables and plots."""
    raise NotImplementedError("issue 5")

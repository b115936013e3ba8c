def run():
    """Train algorithms."""
    raise NotImplementedError("issue 3")

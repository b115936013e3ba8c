"""Subcommand implementations; each module keeps its imports light (heavy ones inside functions)."""

"""artifactd: self-hostable, Artifacts-compatible versioned storage that speaks Git."""

__version__ = "0.1.0"

"""artifactd: self-hostable, Artifacts-compatible versioned storage that speaks Git."""

__version__ = "0.1.0"

_BINDING = ("Artifacts", "AsyncArtifacts", "ArtifactsError")


def __getattr__(name: str):
    """``from artifactd import Artifacts`` (the binding loads on first use)."""
    if name in _BINDING:
        from artifactd import binding

        return getattr(binding, name)
    raise AttributeError(f"module 'artifactd' has no attribute {name!r}")

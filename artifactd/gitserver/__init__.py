"""Git storage on disk and C git as the wire-protocol engine."""

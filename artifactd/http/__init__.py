"""HTTP adapters: the REST control plane and Git smart HTTP."""

"""Data: pinned assets from package registries, corpora, token caches and Lightning DataModules."""

"""Pipelines across stages: `upstream.with_upstream` builds and caches the models a stage needs and was not given."""

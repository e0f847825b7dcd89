"""Pipelines across stages: the upstream models a stage needs, built and cached (`with_upstream`)."""

from minigpt.pipeline.upstream import with_upstream

__all__ = ["with_upstream"]

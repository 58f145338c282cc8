"""Workflows: the jobs that combine several layers (embed a collection, cluster it and keep what was
learnt, search it, evaluate a manifest end to end), assembled once here and called by the CLI and the
public API (:mod:`comicid.api`)."""

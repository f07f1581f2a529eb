"""Inference: model bundle, posterior summaries, k-NN kernels and the catalogue pipeline."""

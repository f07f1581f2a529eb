"""What training and inference share, below both.

``train`` writes what ``infer`` reads, and both compute the same things: the model-bundle file
format and its verification, the encoder file format, the OOD reference and its score, the
posterior summaries, the exact k-NN kernel, and representations of a prepared set. They live
here, so that neither ``train`` nor ``infer`` imports the other.
"""

"""How predictions are scored: the training losses, the read-out of logits as classes or
probabilities, and confusion-matrix metrics."""

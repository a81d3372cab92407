"""How good the stored embeddings are (`medsearch eval`, ``evaluate.evaluate``): one split shared by every model and
method, the paper's heads, k-NN voting and retrieval, AUC with bootstrap CIs and paired deltas, and the report."""

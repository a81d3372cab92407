"""Similar cases: a query image encoded as its store was, searched in the model's FAISS index, with the neighbours'
vote (`medsearch query`, ``query.query``); and the k-NN vote as a scikit-learn classifier (``knn.KNNVoter``)."""

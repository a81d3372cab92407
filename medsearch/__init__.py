"""medsearch: a medical-image vector database. Embed once into HDF5, index with FAISS, then retrieve similar cases,
vote with k-NN, and train the linear heads of "Embeddings are all you need!" (arXiv 2412.09445) on the same store."""
__version__ = "0.1.0"

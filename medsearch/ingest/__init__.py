"""From a dataset folder to stored vectors: read the rows and their labels, decode the images, fingerprint the files,
run the encoders, and commit the embeddings to the store (`medsearch index`, entry point ``indexing.index_dataset``)."""

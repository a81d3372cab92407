"""What is on disk and what it promises: the HDF5 store with its schema, validation, journal and writer lock, atomic
file writes, the FAISS index files, and the store summary (`medsearch info`)."""

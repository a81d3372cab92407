"""One module per command; each is a plain function whose keyword arguments are its configuration."""

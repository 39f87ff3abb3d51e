"""HTML adapters, one module per page family."""

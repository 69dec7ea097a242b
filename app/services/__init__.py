"""The domain: rules live here and never import FastAPI."""

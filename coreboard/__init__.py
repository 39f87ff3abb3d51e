"""Coreboard's command line and Python client (no Django: only httpx, click, rich, websockets)."""

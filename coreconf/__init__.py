"""Coreboard's configuration below everything else: the settings table (config) and where
files, secrets and the embedded services live (paths).

Its own package, importing neither Django nor any Coreboard package, so that Django's
settings, the jobs app and the launcher (which runs before Django is configured) all read
one definition without importing each other.
"""

"""Code both the web and the worker processes use: settings, database, store, catalog."""

"""A server that fails at start: the traceback on stderr is what the client should quote."""

raise RuntimeError("broken server: missing configuration value DEMO_TOKEN")

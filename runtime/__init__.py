"""Where work happens: sandboxes (local, Docker, bubblewrap), per-task workspaces, the vLLM launcher."""

"""Our own MCP servers (shell, files, web) live here, each runnable alone over stdio or HTTP."""

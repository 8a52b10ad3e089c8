"""The MCP client side: connects MCP servers and turns their tools into model tools.

Import from the modules: `tools.hub.ToolHub`, `tools.config.ServerSpec`, `tools.results.ToolOutcome`, ...
"""

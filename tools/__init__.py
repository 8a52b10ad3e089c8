"""The MCP client side: connects MCP servers and turns their tools into model tools.

Import from the modules: `agent.tools.hub.ToolHub`, `agent.tools.config.ServerSpec`, `agent.tools.results.ToolOutcome`, ...
"""

"""The MCP client side: connects MCP servers and turns their tools into model tools."""

"""The chat graph as ``langgraph.json`` names it, built when the server loads this file.

``agent.graph.graph`` is built on first use, so importing ``agent.graph`` loads no
model. The server reads a graph from its module's namespace (``module.__dict__``), where
a lazily built attribute is not, so this module, which only the server loads, builds it
at import, and the server starts with its graph as before.
"""

from agent.graph import graph

__all__ = ("graph",)

"""memagent: a LangGraph chat agent with user-managed memory, persisted in PostgreSQL."""

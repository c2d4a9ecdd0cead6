"""The memory model: event kinds, the updates that change memory, reading them back, and
what the model sees of the conversation (the context budget and compaction)."""

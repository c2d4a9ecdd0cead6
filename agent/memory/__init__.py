"""What the model sees of the conversation: the context budget and compaction."""

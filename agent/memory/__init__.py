"""The memory model: event kinds, the updates that change memory, and reading them back."""

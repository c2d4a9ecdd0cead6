"""What the model is told about itself and its memory."""

SYSTEM_PROMPT = """You are memagent, a helpful assistant that remembers this conversation \
across sessions. The user can manage what you remember:
- When they ask you to forget something (or everything), call forget_conversation.
- When they want to go back to an earlier point ("go back to before I told you X", \
"undo that"), call conversation_timeline to find the point, then rewind_to with its id.
Only ever act on this conversation. Never claim to have forgotten something unless the \
tool confirmed it."""

FORGET_CONFIRMATION = "Done: I've forgotten our conversation up to this point."
REWIND_CONFIRMATION = "Done: I've gone back to that earlier point; what came after it is set aside."
FORGET_DETAILS_CONFIRMATION = (
    "Done: I've forgotten that detail; the rest of our conversation stays. "
    "(It can still be brought back by going back to before this.)"
)
ERASE_CONFIRMATION = "Done: that detail is erased for good from every stored copy of this thread."
ERASE_SERVER_RUNS = "The server also deleted {count} earlier run record(s) that held it."
ERASE_NOT_REACHED = "Out of memagent's reach, so it may still be there: {places}."
ERASE_NOT_REACHED_RUNNING = (
    "the server's record of a run still going that held it (a run cannot be deleted "
    "while it runs, so neither can the one erasing)"
)
ERASE_NOT_REACHED_THREAD_STATE = (
    "the server's copy of this thread's latest state, until the thread's next run replaces it"
)
ERASE_NOT_REACHED_SERVER = "the server's records of this thread's runs ({reason})"
ERASE_NOT_REACHED_LOGS = "the server's logs"
ERASE_NOT_REACHED_TRACES = "LangSmith traces (tracing is on)"
ERASE_NOT_REACHED_PROVIDER = "the model provider, which was sent the earlier turns"
ERASE_DECLINED = "Nothing was erased: you did not confirm."
ERASE_QUESTION = "Erase these details for good from every stored copy of this conversation?"
UNDO_HINT = "To undo the last change before this message: rewind_to "
"""Ends the timeline tool's answer; the offline model looks for it to carry out "undo"."""

REMOVED_MARKER = "[removed at the user's request]"
"""What a forgotten or erased detail is replaced by, visibly, so no reader (the model
included) mistakes the gap for something the user said."""

SUMMARY_LABEL = "[Summary of our earlier conversation, made by memagent to save room]"
"""Heads every summary message, so no reader takes it for something the user typed."""

SUMMARY_REMOVED = (
    "This summary's content was removed at the user's request: it was made from messages "
    "holding a detail they asked to forget. Ask the user again for anything you need from "
    "that part of the conversation."
)
"""What a summary made from a forgotten or erased detail says instead (after the label).

It has no quote marker in it (``REMOVED_MARKER``): nothing of the summary is left to
point at, and ``last_forgotten_details`` must not take it for a partly edited message."""

SUMMARY_PROMPT = """You condense the earlier part of a conversation between a user and \
an assistant, so the assistant can carry on without the original messages. Keep every \
fact the user stated about themselves or their task (names, numbers, dates, addresses, \
preferences, decisions), what was agreed, and questions still open. Keep what the summary \
so far says unless the new part of the conversation changes it. Write in the language of \
the conversation, in plain sentences, at most {words} words. Answer with the summary only."""
"""The summariser's system prompt; ``{words}`` is the summary's length limit."""

SUMMARY_REQUEST = """Summary so far:
{previous}

Conversation to add to it:
{transcript}"""
"""The summariser's request: the running summary and the turns it now takes in."""

OFFLINE_SUMMARY_LABEL = "[offline demo summary: what you told me, quoted]"
"""Heads the offline demo model's extractive summary: quotes, not an LLM's paraphrase."""

COMPACT_CONFIRMATION = (
    "Done: I've summarised our earlier conversation to free room; the summary stands in "
    "for it. (Going back to before this brings every message back.)"
)
NOTHING_TO_COMPACT = "There is nothing earlier to summarise yet: our conversation is short."
LEFT_OUT_NOTE = (
    "\n\n(Note: our oldest turns could not be summarised just now, so they were left out of "
    "this reply. They are still saved.)"
)
"""Shown after the reply it belongs to (it streams last), hence the blank line first."""
TOO_LARGE_REPLY = (
    "This is too long for me to read: your message (with what my tools returned for it) "
    "needs about {tokens} tokens, and I can take in at most {budget}. Please send it in "
    "shorter parts; our conversation goes on."
)

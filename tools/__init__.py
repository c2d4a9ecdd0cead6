"""memagent's tools: the model's memory tools (``tools.memory``) and thread
administration for code and the command line (``tools.admin``)."""

# type: ignore
# Copied from the langgraph 1.2.24 source distribution (tests/any_int.py).
# MIT License, Copyright (c) 2024 LangChain, Inc.: see tests/upstream/langgraph/LICENSE.
# Unchanged; see tests/upstream/langgraph/conftest.py.

class AnyInt(int):
    def __init__(self) -> None:
        super().__init__()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int)

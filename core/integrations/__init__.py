"""What the framework integrations share, kept out of the engine (which never imports this package).

- `settings.RainSettings`: the pydantic settings base of LangChain's and LlamaIndex's model classes, its option
  fields generated from `RainConfig`;
- `registry.shared_engine`: one `Rain` per (loaded model, judge) for every integration object in the process;
- `streaming.iterate_in_thread`: a blocking generation handed to an asyncio event loop.

Needs pydantic, which both frameworks bring (and the ``langchain`` / ``llamaindex`` extras declare).
"""

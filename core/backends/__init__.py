"""The backends behind the model seam (`rain_core.model.LanguageModel`), each in a room of its own:
`transformers/` runs the model in this process; `served` asks an OpenAI-compatible server."""

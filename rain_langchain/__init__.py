"""rain_langchain: RAIN (rewindable auto-regressive inference) for LangChain.

- `RainLLM`: a text-completion model; `ChatRain`: a chat model with prompt-based tool calling;
- `SelfEvaluationPrompt`: the judge's question as a prompt template, and `.as_judge(model)` to guard a chain;
- `RainEmbeddings`: the local all-MiniLM-L6-v2 encoder as LangChain embeddings.

All of them share one loaded model per process.
"""

from .chat_models import ChatRain
from .embeddings import RainEmbeddings
from .evaluation import SelfEvaluationPrompt
from .llms import RainLLM

__all__ = ["ChatRain", "RainLLM", "SelfEvaluationPrompt", "RainEmbeddings"]

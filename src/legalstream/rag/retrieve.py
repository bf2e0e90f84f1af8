"""LlamaIndex face of the engine: a BaseRetriever bound to one case.

Agent code (or a LlamaIndex query engine) uses this without knowing whether
Qdrant Edge or a Qdrant server is underneath.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from legalstream.rag.citations import Citation

if TYPE_CHECKING:
    from legalstream.rag.engine import RetrievalEngine


def citation_node(c: Citation) -> NodeWithScore:
    node = TextNode(
        id_=c.chunk_id,
        text=c.quote,
        start_char_idx=c.char_start,
        end_char_idx=c.char_end,
        metadata={k: v for k, v in c.to_dict().items() if k not in ("quote", "score")},
    )
    return NodeWithScore(node=node, score=c.score)


class CaseRetriever(BaseRetriever):
    def __init__(
        self,
        engine: RetrievalEngine,
        case_id: int,
        *,
        k: int | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.case_id = case_id
        self.k = k
        self.mode = mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.engine.search(query_bundle.query_str, self.case_id, k=self.k, mode=self.mode)
        return [citation_node(c) for c in hits]

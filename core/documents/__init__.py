"""Documents: uploaded files parsed into pages and chunks, embedding search over them, answers
grounded on them, and the retrievers behind search.

Modules and their public names:
- chunking: ChunkSpec, Chunk, Chunker
- grounding: check_k, retrieve, fit_sources, ground, label, with_sources, ...
- parsing: DocumentError, UnsupportedType, NoFileName, EmptyFile, FileTooLarge, CorruptFile, ...
- retrieval: Embedder, Neighbour, VectorIndex
- retrieval_metrics: EvaluationSet
- retrievers: RetrieverService
- service: IncomingFile, IngestResult, SearchHit, DocumentService
"""

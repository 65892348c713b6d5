"""Split pages into overlapping chunks on paragraph and sentence boundaries, and find exact and
near-duplicate chunks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.documents.parsing import Page
from core.errors import InvalidInput

NEAR_DUPLICATE_JACCARD = 0.7  # word 3-shingle overlap that counts as the same passage


@dataclass(frozen=True, kw_only=True)
class ChunkSpec:
    size: int = 200  # tokens of the embedding model
    overlap: int = 40

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 1024:
            raise InvalidInput(f"chunk size must be 16-1024 tokens, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise InvalidInput(
                f"chunk overlap must be 0-{self.size // 2} tokens (half the size), "
                f"got {self.overlap}"
            )


@dataclass(frozen=True, kw_only=True)
class Chunk:
    page: int | None
    char_start: int  # offsets into the page's normalised text
    char_end: int
    token_count: int
    text: str

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    """Equal for texts that differ only in case and spacing."""
    canonical = " ".join(text.lower().split())
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def shingles(text: str, width: int = 3) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < width:
        return {" ".join(words)}
    return {" ".join(words[i : i + width]) for i in range(len(words) - width + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class Chunker:
    """Chunks of at most `size` tokens of the embedding model's tokenizer (`tokenizer.json`)
    that start and end on paragraph, sentence or clause boundaries.

    semchunk cuts each page into pieces of at most `min(overlap, size - overlap)` tokens at the
    most structural splitter that works (blank lines, line breaks, sentence ends, clause marks,
    spaces); whole pieces are then packed into chunks up to `size`, and the next chunk starts
    with the last pieces of the previous one that fit in `overlap` tokens."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # semchunk counts the same spans many times while it searches for boundaries.
        self._count = lru_cache(maxsize=1 << 16)(self.count_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def fewest_chunks(self, pages: list[Page], spec: ChunkSpec) -> int:
        """A lower bound of the chunk count, from one fast tokenizer pass: checks a chunk limit
        before the slower boundary search."""
        encodings = self.tokenizer.encode_batch([p.text for p in pages], add_special_tokens=False)
        return -(-sum(len(e.ids) for e in encodings) // spec.size)

    def chunk(self, pages: list[Page], spec: ChunkSpec) -> list[Chunk]:
        return [chunk for page in pages for chunk in self._page_chunks(page, spec)]

    def _pieces(self, text: str, spec: ChunkSpec) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of the pieces, offsets into `text`, no outer whitespace."""
        import semchunk

        size = min(spec.overlap, spec.size - spec.overlap) if spec.overlap else spec.size
        _, spans = semchunk.chunk(text, size, self._count, memoize=False, offsets=True)
        pieces = []
        for start, end in spans:
            piece = text[start:end]
            start += len(piece) - len(piece.lstrip())
            end -= len(piece) - len(piece.rstrip())
            if end > start:
                pieces.append((start, end, self._count(text[start:end])))
        return pieces

    def _page_chunks(self, page: Page, spec: ChunkSpec) -> list[Chunk]:
        pieces = self._pieces(page.text, spec)
        chunks, first = [], 0
        while first < len(pieces):
            last, tokens = first, 0
            while last < len(pieces) and (last == first or tokens + pieces[last][2] <= spec.size):
                tokens += pieces[last][2]
                last += 1
            start, end = pieces[first][0], pieces[last - 1][1]
            text = page.text[start:end]
            chunks.append(Chunk(page=page.number, char_start=start, char_end=end,
                                token_count=self.count_tokens(text), text=text))
            if last == len(pieces):
                break
            following, shared = last, 0
            while following - 1 > first and shared + pieces[following - 1][2] <= spec.overlap:
                following -= 1
                shared += pieces[following][2]
            first = following
        return chunks

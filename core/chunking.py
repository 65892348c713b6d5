"""Split pages into overlapping token windows and find exact and near-duplicate chunks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.documents import Page
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
    """Token windows measured with the embedding model's own tokenizer (`tokenizer.json`)."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def chunk(self, pages: list[Page], spec: ChunkSpec) -> list[Chunk]:
        texts = [page.text for page in pages]
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        chunks = []
        for page, encoding in zip(pages, encodings, strict=True):
            chunks += self._windows(page, encoding.offsets, encoding.word_ids, spec)
        return chunks

    @staticmethod
    def _windows(page: Page, offsets, word_ids, spec: ChunkSpec) -> list[Chunk]:
        """Windows of at most `size` tokens that start and end on whole words."""

        def splits_word(at: int) -> bool:
            return 0 < at < len(offsets) and word_ids[at] == word_ids[at - 1]

        chunks, start, step = [], 0, spec.size - spec.overlap
        while start < len(offsets):
            end = min(start + spec.size, len(offsets))
            snapped = end
            while splits_word(snapped) and snapped > start + 1:
                snapped -= 1
            end = snapped if not splits_word(snapped) else end  # a giant word is cut anyway
            char_start, char_end = offsets[start][0], offsets[end - 1][1]
            text = page.text[char_start:char_end].strip()
            if text:
                chunks.append(
                    Chunk(
                        page=page.number,
                        char_start=char_start,
                        char_end=char_end,
                        token_count=end - start,
                        text=text,
                    )
                )
            if end == len(offsets):
                break
            start = max(start + 1, min(start + step, end - spec.overlap))
            while splits_word(start) and start < end:
                start += 1
        return chunks

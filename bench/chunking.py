"""Chunking benchmark: grounded retrieval recall of token windows (the old chunker) against
chunks on paragraph and sentence boundaries (core.documents.chunking.Chunker, semchunk).

    .venv/bin/python bench/chunking.py [--documents 10 --seed 0 --sizes 200/40 100/20]

The documents are generated here: sections about invented depots and products, paragraphs of
filler sentences about them, and one or two fact sentences per section (an opening hour, a
fee, a manager..., most with a trailing clause, as real fact sentences run 20-40 tokens) with
a question for each fact. Both chunkers split the same normalised
pages with the bundled embedding model's tokenizer; every chunk and question is embedded with
the bundled all-MiniLM-L6-v2 and the chunks are ranked by cosine over the whole corpus. A
question counts as found at k when one of its top-k chunks holds the whole fact sentence;
"whole" is the share of fact sentences that some chunk holds whole at all.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from core.documents.chunking import Chunk, Chunker, ChunkSpec  # noqa: E402
from core.documents.parsing import Page, normalise  # noqa: E402
from core.documents.retrieval import Embedder  # noqa: E402

SYLLABLES = ("bar", "wick", "hol", "mere", "ston", "ley", "ash", "ford", "tren", "dal", "cor",
             "by", "vel", "ham", "quar", "rin", "mont", "sel", "tor", "wyn")
FACTS = (  # (fact sentence, question); {e} the entity, {v} a generated value
    ("The {e} depot closes at {v} on Fridays.", "When does the {e} depot close on Fridays?"),
    ("Parking at the {e} depot costs {v} euros a day.", "How much is parking at the {e} depot?"),
    ("The manager of the {e} depot is {v}.", "Who manages the {e} depot?"),
    ("The {e} depot has {v} loading bays.", "How many loading bays does the {e} depot have?"),
    ("Returns to the {e} depot are accepted for {v} days.",
     "For how long does the {e} depot accept returns?"),
    ("The {e} pump is rated for {v} bar of pressure.", "What pressure is the {e} pump rated for?"),
    ("The {e} charger needs {v} minutes for a full charge.",
     "How long does the {e} charger take to charge fully?"),
    ("The warranty on the {e} drill lasts {v} months.",
     "How long is the warranty on the {e} drill?"),
)
FILLER = (
    "The {e} site was renovated last spring and the waiting area is larger now.",
    "Staff at {e} take part in the safety training every quarter.",
    "Customers often ask about {e} when they call the central help line.",
    "Deliveries for {e} are planned one week ahead by the regional office.",
    "The {e} team keeps a log of every incident in the shared folder.",
    "A new sign for {e} was put up near the main road in March.",
    "Questions about invoices from {e} go to the accounts team, not to the site.",
    "The {e} building shares its car park with a small bakery.",
    "Visitors to {e} must sign in at the front desk and wear a badge.",
    "Most orders handled at {e} leave on the same afternoon.",
    "The tools used at {e} are checked by an outside firm twice a year.",
    "Some older manuals still list the previous address of {e}.",
)
CLAUSES = (  # real fact sentences are rarely short; a long one crosses window edges
    ", as the regional office confirmed in its last notice to all customers and suppliers",
    ", except on public holidays, when the site follows the national schedule instead",
    ", according to the agreement signed with the works council at the start of the year",
    ", which the head office reviews every January together with the other local rules",
    ", and this applies to private customers as well as to registered trade accounts",
    "",
)
NAMES = ("Ines Marlow", "Tomas Reid", "Ada Okafor", "Luca Brandt", "Mei Tanaka", "Sven Holm",
         "Rosa Duarte", "Omar Haddad")


def value(template: str, rng: random.Random) -> str:
    if "manager" in template:
        return rng.choice(NAMES)
    if "closes at" in template:
        return f"{rng.randint(14, 21)}:{rng.choice(['00', '15', '30', '45'])}"
    return str(rng.randint(2, 95))


def make_corpus(documents: int, rng: random.Random) -> tuple[list[Page], list[tuple[str, str]]]:
    """(pages, [(fact sentence, question)]); one page per document, sections per entity."""
    pages, facts, used = [], [], set()
    for number in range(documents):
        sections = []
        for _ in range(rng.randint(4, 6)):
            entity = "".join(rng.sample(SYLLABLES, 2)).capitalize()
            while entity in used:
                entity = "".join(rng.sample(SYLLABLES, 3)).capitalize()
            used.add(entity)
            chosen = rng.sample(FACTS, rng.randint(1, 2))
            paragraphs = []
            for _ in range(rng.randint(2, 3)):
                filler = rng.sample(FILLER, rng.randint(2, 4))
                paragraphs.append([t.format(e=entity) for t in filler])
            for fact, question in chosen:
                sentence = fact.format(e=entity, v=value(fact, rng))
                sentence = sentence[:-1] + rng.choice(CLAUSES) + "."
                paragraph = rng.choice(paragraphs)
                paragraph.insert(rng.randint(0, len(paragraph)), sentence)
                facts.append((sentence, question.format(e=entity)))
            body = "\n\n".join(" ".join(p) for p in paragraphs)
            sections.append(f"## {entity}\n\n{body}")
        pages.append(Page(number + 1, normalise("\n\n".join(sections))))
    return pages, facts


def token_windows(chunker: Chunker, pages: list[Page], spec: ChunkSpec) -> list[Chunk]:
    """The chunker this replaces: windows of `size` tokens, `size - overlap` apart, snapped
    to whole words."""
    chunks = []
    for page in pages:
        encoding = chunker.tokenizer.encode(page.text, add_special_tokens=False)
        offsets, word_ids = encoding.offsets, encoding.word_ids

        def splits_word(at: int, offsets=offsets, word_ids=word_ids) -> bool:
            return 0 < at < len(offsets) and word_ids[at] == word_ids[at - 1]

        start, step = 0, spec.size - spec.overlap
        while start < len(offsets):
            end = min(start + spec.size, len(offsets))
            snapped = end
            while splits_word(snapped) and snapped > start + 1:
                snapped -= 1
            end = snapped if not splits_word(snapped) else end
            char_start, char_end = offsets[start][0], offsets[end - 1][1]
            chunks.append(Chunk(page=page.number, char_start=char_start, char_end=char_end,
                                token_count=end - start, text=page.text[char_start:char_end]))
            if end == len(offsets):
                break
            start = max(start + 1, min(start + step, end - spec.overlap))
            while splits_word(start) and start < end:
                start += 1
    return chunks


def evaluate(chunks: list[Chunk], facts, embedder: Embedder, ks) -> dict:
    vectors = embedder.embed_many([c.text for c in chunks])
    questions = embedder.embed([q for _, q in facts])
    ranked = np.argsort(-(questions @ vectors.T), axis=1)
    holds = [[i for i, c in enumerate(chunks) if fact in c.text] for fact, _ in facts]
    out = {"chunks": len(chunks), "tokens": float(np.mean([c.token_count for c in chunks])),
           "whole": float(np.mean([bool(h) for h in holds]))}
    for k in ks:
        out[f"r@{k}"] = float(np.mean([bool(set(ranked[q, :k]) & set(h))
                                       for q, h in enumerate(holds)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", nargs="+", default=["200/40", "100/20", "64/16"],
                        help="chunk size/overlap in tokens")
    args = parser.parse_args()
    pages, facts = make_corpus(args.documents, random.Random(args.seed))
    embedder = Embedder(device="cpu")
    chunker = Chunker(embedder.tokenizer_file)
    words = sum(len(p.text.split()) for p in pages)
    print(f"{len(pages)} documents, {words} words, {len(facts)} facts with a question each; "
          f"load average {os.getloadavg()[0]:.1f}")
    ks = (1, 3, 5)
    header = f"{'size/overlap':>12} {'chunker':<16} {'chunks':>6} {'tokens':>6} {'whole':>6}"
    print(header + "".join(f" {'recall@' + str(k):>9}" for k in ks) + f" {'chunk s':>8}")
    for size_overlap in args.sizes:
        size, overlap = (int(x) for x in size_overlap.split("/"))
        spec = ChunkSpec(size=size, overlap=overlap)
        for name, split in (("token windows", lambda s=spec: token_windows(chunker, pages, s)),
                            ("sentences", lambda s=spec: chunker.chunk(pages, s))):
            began = time.perf_counter()
            chunks = split()
            seconds = time.perf_counter() - began
            row = evaluate(chunks, facts, embedder, ks)
            print(f"{size_overlap:>12} {name:<16} {row['chunks']:>6} {row['tokens']:>6.0f} "
                  f"{row['whole']:>6.2f}" + "".join(f" {row[f'r@{k}']:>9.2f}" for k in ks)
                  + f" {seconds:>8.2f}")


if __name__ == "__main__":
    main()

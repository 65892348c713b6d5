"""Where the team stands in the loop: its counts and the next step as one sentence."""

from __future__ import annotations

from dataclasses import dataclass

# Below this many rated turns a dataset has too little to teach.
MIN_RATED_TURNS = 3


@dataclass(frozen=True)
class NextStep:
    stage: str  # documents, chat, datasets, train, compare, audit
    sentence: str
    action: str


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def next_step(counts: dict) -> NextStep:
    """The first unfinished step of the loop, judged from the Start page's counts."""
    have = (f"{plural(counts['documents'], 'document')}, "
            f"{plural(counts['rated_turns'], 'rated turn')}")
    if counts["documents"] == 0:
        return NextStep("documents", "No documents yet: upload the ones the model should "
                        "answer from", "Upload documents")
    if counts["turns"] == 0:
        return NextStep("chat", f"{have}: ask the model questions about them", "Chat")
    if counts["rated_turns"] < MIN_RATED_TURNS:
        return NextStep("chat", f"{have}: rate at least {MIN_RATED_TURNS} answers (stars, "
                        "thumb, a corrected answer)", "Chat and rate")
    if counts["datasets"] == 0:
        return NextStep("datasets", f"{have}: build a dataset", "Build a dataset")
    if counts["active_runs"]:
        return NextStep("train", f"{plural(counts['active_runs'], 'training run')} in "
                        "progress: follow it", "Follow the run")
    if counts["adapters"] == 0:
        runs = counts["runs"]
        sentence = (f"{plural(counts['datasets'], 'dataset')}: train an adapter" if not runs
                    else f"{plural(runs, 'run')}, no adapter yet: see why and train again")
        return NextStep("train", sentence, "Train")
    if counts["votes"] == 0:
        return NextStep("compare", f"{plural(counts['adapters'], 'adapter')}: compare it "
                        "with the base model blind and vote", "Compare")
    if counts["promotions"] == 0:
        return NextStep("audit", f"{plural(counts['votes'], 'vote')}: explain and audit the "
                        "adapter, then promote it in Models", "Audit")
    return NextStep("chat", "The loop is closed: keep chatting and rating; new ratings make the "
                    "next dataset version", "Chat")

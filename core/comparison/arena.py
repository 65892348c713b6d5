"""Side by side: two models answer one prompt, people vote (optionally blind), statistics decide.

Both sides run on the one copy of the base weights, so memory stays one model's: the sides take
turns, each holding the model with its own adapter while it generates; on a GPU, when at most
one adapter is involved, they are generated together in one batch (the adapter applies per row).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import combinations

from core.comparison.stats import bradley_terry_ratings, sign_test, wilson_interval
from core.documents.grounding import SOURCES_K, check_k, retrieve
from core.errors import Conflict, InvalidInput, NotFound
from core.paths import looks_like_path
from core.serving.generation import GenerationOptions, check_limits, turn_fields
from core.serving.modelspec import BASE, FEWSHOT, AnswerPair, ModelResolver, ResolvedModel
from core.store.arena import ArenaStore, ComparisonRecord
from core.store.chatlog import ChatLog, TurnRecord

SIDES = ("left", "right")
VOTES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True, kw_only=True)
class CompareRequest:
    prompt: str
    model_a: str
    model_b: str
    blind: bool = False
    user: str = "anonymous"
    system_prompt: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    use_documents: bool = False  # ground both answers on the documents, exactly as Chat does
    documents_k: int = SOURCES_K

    def __post_init__(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise InvalidInput("the prompt is empty")
        check_k(self.documents_k)
        if not self.model_a or not self.model_b:
            raise InvalidInput("choose two models to compare")
        if self.model_a.strip() == self.model_b.strip():
            raise InvalidInput(f"both sides are {self.model_a!r}; choose two different models")
        if not self.user.strip():
            raise InvalidInput("the user name is empty")


@dataclass(frozen=True)
class CompareUpdate:
    """A step of a comparison: `side` is streaming `text`; `comparison` is set on the last."""

    side: str
    text: str
    turn: TurnRecord | None = None
    comparison: ComparisonRecord | None = None
    sources: tuple = ()  # core.documents.service.SearchHit both answers were grounded on


@dataclass(frozen=True, kw_only=True)
class PairSummary:
    model_a: str
    model_b: str
    votes: int  # every vote, both-bad included
    wins_a: int
    wins_b: int
    ties: int
    both_bad: int
    counted: int  # the votes that compare the two: wins, losses and ties (not both-bad)
    win_rate_a: float | None  # ties and both-bad excluded
    ci_low: float
    ci_high: float
    p_value: float | None
    enough: bool  # counted reaches the minimum: before that the numbers are not a verdict
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Gate:
    allowed: bool
    reason: str
    summary: PairSummary


def assign_sides(rng: random.Random, a, b) -> tuple:
    """A fair coin decides which model is shown on the left in blind mode."""
    return (b, a) if rng.random() < 0.5 else (a, b)


def pair_summary(
    votes: list[dict], model_a: str, model_b: str, *, min_votes: int = 10, alpha: float = 0.05
) -> PairSummary:
    """Votes between two models, whichever side each was shown on.

    The win rate, its interval (Wilson with continuity correction) and the sign test use the
    decisive votes only; ties count towards the minimum (someone compared the two and found them
    equal), both-bad votes do not (they judge neither against the other).
    """
    wins_a = wins_b = ties = both_bad = 0
    for vote in votes:
        sides = {vote["left_model"]: "left", vote["right_model"]: "right"}
        if set(sides) != {model_a, model_b}:
            continue
        if vote["vote"] == sides[model_a]:
            wins_a += 1
        elif vote["vote"] == sides[model_b]:
            wins_b += 1
        elif vote["vote"] == "tie":
            ties += 1
        else:
            both_bad += 1
    decisive = wins_a + wins_b
    counted = decisive + ties
    interval = wilson_interval(wins_a, decisive, continuity=True)
    p_value = sign_test(wins_a, wins_b).p_value
    enough = counted >= min_votes
    if not enough:
        verdict = f"not enough votes yet ({counted} of {min_votes})"
    elif p_value is None:
        verdict = "no clear winner (only ties)"
    elif p_value >= alpha:
        verdict = f"no clear winner (p = {p_value:.2g})"
    else:
        winner = model_a if wins_a > wins_b else model_b
        verdict = f"{winner} is better (p = {p_value:.2g})"
    return PairSummary(
        model_a=model_a,
        model_b=model_b,
        votes=counted + both_bad,
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        both_bad=both_bad,
        counted=counted,
        win_rate_a=wins_a / decisive if decisive else None,
        ci_low=interval.low,
        ci_high=interval.high,
        p_value=p_value,
        enough=enough,
        verdict=verdict,
    )


class ArenaService:
    def __init__(
        self,
        resolver: ModelResolver,
        log: ChatLog,
        store: ArenaStore,
        *,
        registry=None,
        documents=None,  # core.documents.service.DocumentService: grounding
        alpha: float = 0.05,
        min_votes: int = 10,
        max_prompt_chars: int = 20_000,
        max_new_tokens: int = 1024,
        rng: random.Random | None = None,
    ) -> None:
        self.resolver = resolver
        self.log = log
        self.store = store
        self.registry = registry
        self.documents = documents
        self.alpha = alpha
        self.min_votes = min_votes
        self.max_prompt_chars = max_prompt_chars
        self.max_new_tokens = max_new_tokens
        self.rng = rng or random.SystemRandom()
        self._rng_lock = threading.Lock()

    # side by side
    def check(self, request: CompareRequest) -> tuple[ResolvedModel, ResolvedModel]:
        """Validate limits and resolve both models before anything streams."""
        check_limits(
            request.prompt,
            request.options,
            max_prompt_chars=self.max_prompt_chars,
            max_new_tokens=self.max_new_tokens,
        )
        return self.resolver.resolve(request.model_a), self.resolver.resolve(request.model_b)

    def stream(self, request: CompareRequest, stop_event=None) -> Iterator[CompareUpdate]:
        """Both sides stream together, from one batch; then each answer is logged as a turn
        and the comparison is stored."""
        first, second = self.check(request)
        if request.blind:
            with self._rng_lock:
                first, second = assign_sides(self.rng, first, second)
        comparison_id = uuid.uuid4().hex
        messages = self._messages(request)
        hits = (
            retrieve(self.documents, request.prompt, request.documents_k)
            if request.use_documents else []
        )
        pair = AnswerPair(self.resolver, (first, second), messages, request.options, hits=hits)
        if stop_event is not None:
            pair.stop_event = stop_event
        texts = ["", ""]
        for index, delta in pair:
            texts[index] += delta
            yield CompareUpdate(SIDES[index], texts[index])
        turns = {}
        for i, side in enumerate(SIDES):
            turns[side] = self._record(request, pair, i, comparison_id)
            yield CompareUpdate(side, turns[side].response, turns[side], sources=pair.sources)
        record = ComparisonRecord(
            id=comparison_id,
            created_at=datetime.now(),
            user_id=request.user.strip(),
            prompt=request.prompt,
            blind=request.blind,
            left_model=first.spec,
            left_version=first.version,
            right_model=second.spec,
            right_version=second.version,
            left_interaction_id=turns["left"].id,
            right_interaction_id=turns["right"].id,
        )
        self.store.add_comparison(record)
        yield CompareUpdate(
            "right", turns["right"].response, turns["right"], record, sources=pair.sources
        )

    def compare(self, request: CompareRequest) -> CompareUpdate:
        *_, last = self.stream(request)
        return last

    @staticmethod
    def _messages(request: CompareRequest) -> list[dict]:
        question = {"role": "user", "content": request.prompt}
        if request.system_prompt:
            return [{"role": "system", "content": request.system_prompt}, question]
        return [question]

    def _record(self, request, pair: AnswerPair, index: int, comparison_id: str) -> TurnRecord:
        resolved, prompt, result = pair.sides[index], pair.prompts[index], pair.results[index]
        turn = TurnRecord(
            id=uuid.uuid4().hex,
            conversation_id=uuid.uuid4().hex,
            turn_index=0,
            created_at=datetime.now(),
            user_id=request.user.strip(),
            prompt=request.prompt,
            model_id=resolved.model_id,
            adapter_version=resolved.adapter_version,
            settings={
                **asdict(request.options),
                "system_prompt": request.system_prompt,
                "engine": result.engine,
                "arena": {
                    "comparison_id": comparison_id,
                    "side": SIDES[index],
                    "model": resolved.spec,
                    "fewshot_ids": pair.fewshot_ids[index],
                },
            },
            **turn_fields(prompt, result),
            retrieved_chunk_ids=[hit.chunk_id for hit in pair.sources] or None,
        )
        self.log.add_turn(turn)
        return turn

    # votes
    def vote(self, comparison_id: str, vote: str, *, voter: str = "anonymous") -> ComparisonRecord:
        """Store a vote and return the comparison, whose model names may now be shown."""
        if vote not in VOTES:
            raise InvalidInput(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
        if not voter.strip():
            raise InvalidInput("the voter name is empty")
        comparison = self.store.get_comparison(comparison_id)
        if comparison is None:
            raise NotFound(f"no comparison with id {comparison_id!r}")
        if not self.store.add_vote(comparison, voter.strip(), vote):
            raise Conflict(f"{voter.strip()!r} already voted on this comparison")
        return comparison

    def summary(
        self, model_a: str, model_b: str, *, min_votes: int | None = None,
        alpha: float | None = None,
    ) -> PairSummary:
        if not model_a or not model_b or model_a == model_b:
            raise InvalidInput("name two different models")
        return pair_summary(
            self.store.votes([model_a, model_b]), model_a, model_b,
            min_votes=self.min_votes if min_votes is None else min_votes,
            alpha=self.alpha if alpha is None else alpha,
        )

    def pairs(self) -> list[PairSummary]:
        votes = self.store.votes()
        models = sorted({v["left_model"] for v in votes} | {v["right_model"] for v in votes})
        found = (
            pair_summary(votes, a, b, min_votes=self.min_votes, alpha=self.alpha)
            for a, b in combinations(models, 2)
        )
        return [summary for summary in found if summary.votes]

    def leaderboard(self) -> list[dict]:
        """Bradley-Terry ratings over every model with votes (ties and both-bad left out), best
        first: {model, score, low, high, games, enough}; `enough` once a model has min_votes
        decisive games, before which its place is not a verdict."""
        votes = self.store.votes()
        models = sorted({v["left_model"] for v in votes} | {v["right_model"] for v in votes})
        if len(models) < 2:
            return []
        index = {name: i for i, name in enumerate(models)}
        outcomes = []
        for v in votes:
            left, right = index[v["left_model"]], index[v["right_model"]]
            if v["vote"] == "left":
                outcomes.append((left, right))
            elif v["vote"] == "right":
                outcomes.append((right, left))
        ratings = bradley_terry_ratings(models, outcomes)
        return [{**asdict(r), "enough": r.games >= self.min_votes} for r in ratings]

    # promotion
    def gate(
        self,
        challenger: str,
        incumbent: str,
        *,
        alpha: float | None = None,
        min_votes: int | None = None,
    ) -> Gate:
        """Promotion needs min_votes comparing votes (wins, losses, ties; not both-bad) and a
        significant win (exact sign test on wins and losses, p < alpha)."""
        alpha = self.alpha if alpha is None else alpha
        min_votes = self.min_votes if min_votes is None else min_votes
        if not 0 < alpha < 1:
            raise InvalidInput(f"alpha must be between 0 and 1, got {alpha}")
        if min_votes < 1:
            raise InvalidInput(f"the minimum number of votes must be at least 1, got {min_votes}")
        summary = self.summary(challenger, incumbent, min_votes=min_votes, alpha=alpha)
        if not summary.enough:
            skipped = f" ({summary.both_bad} both-bad not counted)" if summary.both_bad else ""
            reason = f"{summary.counted} of the {min_votes} votes needed so far{skipped}"
        elif summary.wins_a <= summary.wins_b or summary.p_value is None:
            reason = f"{challenger} does not win ({summary.wins_a} wins, {summary.wins_b} losses)"
        elif summary.p_value >= alpha:
            reason = f"not significant yet: p = {summary.p_value:.3g} (needs p < {alpha})"
        else:
            return Gate(
                allowed=True,
                reason=f"{challenger} wins {summary.wins_a}-{summary.wins_b}, "
                f"p = {summary.p_value:.3g} < {alpha}",
                summary=summary,
            )
        return Gate(allowed=False, reason=reason, summary=summary)

    def promote(
        self,
        challenger: str,
        incumbent: str,
        *,
        user: str = "anonymous",
        alpha: float | None = None,
        min_votes: int | None = None,
    ) -> dict:
        # names given as paths go through the allowed-folders check before anything else
        for name in (challenger, incumbent):
            if looks_like_path(name):
                self.resolver.resolve(name)
        gate = self.gate(challenger, incumbent, alpha=alpha, min_votes=min_votes)
        if not gate.allowed:
            raise Conflict(f"cannot promote {challenger}: {gate.reason}")
        if challenger == FEWSHOT or self.resolver.resolve(challenger).adapter_dir is None:
            raise InvalidInput(f"{challenger!r} is not an adapter; only adapters can be promoted")
        if self.registry is None:
            raise InvalidInput("there is no model registry to promote into")
        self.registry.promote(challenger, user=user)
        return self._log_action("promote", challenger, incumbent, user, gate.summary.to_dict())

    def rollback(self, *, user: str = "anonymous") -> dict:
        """Undo the latest promotion through the registry, and log it."""
        if self.registry is None:
            raise InvalidInput("there is no model registry to roll back")
        undone = self.registry.active()
        served = self.registry.rollback(user=user)  # Conflict when nothing is promoted
        now = served.id if served is not None else BASE
        return self._log_action("rollback", now, undone.id if undone else None, user, None)

    def _log_action(self, action, model, previous, user, evidence) -> dict:
        row = {
            "id": uuid.uuid4().hex,
            "created_at": datetime.now(),
            "action": action,
            "model": model,
            "previous": previous,
            "user_id": user.strip() or "anonymous",
            "evidence": evidence,
        }
        self.store.add_promotion(row)
        return row

    def history(self) -> list[dict]:
        return self.store.promotions()

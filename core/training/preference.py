"""Preference tuning (DPO): a LoRA adapter learns to prefer the chosen answer over the rejected one.

The reference policy is the base model itself, reached by disabling the adapter
(`disable_adapter()`), so the run holds one copy of the weights. Per pair, with
log-probabilities summed over the answer tokens only,

    loss = -log sigmoid(beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)))

and the bracket times beta is the reward margin reported with every step.

trl's DPOTrainer would bring its own training loop; the job machinery here (events,
SIGTERM stop, resumable checkpoints, torchrun) is built around ours, so the loss lives
in a subclass of our Trainer instead and everything else is inherited.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidInput
from core.training.data import IGNORE, Example, collate, split_chat
from core.training.distributed import sum_across, sum_gradients
from core.training.lora import Trainer, label_logits


@dataclass(frozen=True)
class PairExample:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def length(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)

    def sequences(self) -> tuple[Example, Example]:
        """(chosen, rejected) as causal examples whose labels cover only the answer."""
        masked = [IGNORE] * len(self.prompt_ids)
        return (Example(self.prompt_ids + self.chosen_ids, masked + self.chosen_ids),
                Example(self.prompt_ids + self.rejected_ids, masked + self.rejected_ids))


def fit_pair(prompt: list[int], chosen: list[int], rejected: list[int],
             max_length: int) -> tuple[list[int], list[int], list[int]]:
    """Cut the prompt from the left (its end, next to the answer, matters most) so the longer
    answer fits; an answer longer than half the budget is cut from the right."""
    longest = max(len(chosen), len(rejected))
    keep = min(len(prompt), max(max_length - longest, max_length // 2))
    prompt = prompt[len(prompt) - keep:]
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


def encode_pair(tokenizer, row: dict, max_length: int) -> PairExample | None:
    """The prompt rendered as chat serving renders it; each answer as the assistant's turn."""
    user = {"role": "user", "content": row["prompt"]}
    prompt, chosen = split_chat(tokenizer, [user, {"role": "assistant", "content": row["chosen"]}])
    _, rejected = split_chat(tokenizer, [user, {"role": "assistant", "content": row["rejected"]}])

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt_ids, chosen_ids, rejected_ids = fit_pair(ids(prompt), ids(chosen), ids(rejected),
                                                    max_length)
    if not (prompt_ids and chosen_ids and rejected_ids):
        return None
    return PairExample(prompt_ids, chosen_ids, rejected_ids)


def check_preference_model(model_path: str) -> None:
    """Refuse an encoder-decoder base before a job is queued (DPO here scores causal LMs)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        return  # not readable here; the worker reports why when it loads the model
    if getattr(config, "is_encoder_decoder", False):
        raise InvalidInput(
            f"preference (DPO) training needs a decoder-only model; {model_path} is an "
            f"encoder-decoder ({config.model_type})"
        )


def sequence_logps(model, batch: dict):
    """Sum of the answer tokens' log-probabilities, one value per row of the batch."""
    import torch

    logits, targets, keep = label_logits(model.get_base_model(), batch)
    token_logps = logits.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    rows = keep.nonzero()[:, 0]
    return torch.zeros(len(keep), dtype=token_logps.dtype,
                       device=token_logps.device).index_add(0, rows, token_logps)


class PreferenceTrainer(Trainer):
    """The SFT trainer with pairs for examples and the DPO loss for the objective."""

    def prepare(self) -> None:
        self.details: dict = {}
        self.eval_margins: dict = {}
        super().prepare()

    def encode(self, rows: list[dict]) -> list[PairExample]:
        if self.seq2seq:
            raise InvalidInput("preference (DPO) training needs a decoder-only model, "
                               "not an encoder-decoder")
        pairs = [encode_pair(self.tokenizer, row, self.spec.max_length) for row in rows]
        return [pair for pair in pairs if pair is not None]

    def pair_batch(self, pairs: list[PairExample]) -> tuple[dict, int]:
        """Chosen sequences first, then rejected ones, right-padded into one batch."""
        chosen, rejected = zip(*(pair.sequences() for pair in pairs), strict=True)
        batch, tokens = collate([*chosen, *rejected], pad_id=self.pad_id, seq2seq=False)
        return self.to_device(batch), tokens

    def pair_losses(self, batch: dict):
        """(DPO loss per pair, reward margin per pair); the reference is the base model."""
        import torch
        import torch.nn.functional as F

        training = self.model.training
        self.model.eval()  # the reference is deterministic: no dropout
        with torch.no_grad(), self.model.disable_adapter():
            reference = sequence_logps(self.model, batch)
        self.model.train(training)
        policy = sequence_logps(self.model, batch)
        half = len(policy) // 2
        ratios = policy - reference
        margins = self.spec.dpo_beta * (ratios[:half] - ratios[half:])
        return -F.logsigmoid(margins), margins.detach()

    def train_step(self, micro_batches: list[list[int]]) -> tuple[float, int]:
        """One optimizer step; loss and reward figures are means over every pair of the step."""

        pairs = sum(len(group) for group in micro_batches)
        loss_sum, margin_sum, correct, tokens = 0.0, 0.0, 0.0, 0
        for group in micro_batches[self.ranks.rank::self.ranks.world]:
            batch, batch_tokens = self.pair_batch([self.train[i] for i in group])
            with self.autocast():
                losses, margins = self.pair_losses(batch)
            loss = losses.sum()
            if self.nan_at and self.step + 1 == self.nan_at:
                loss = loss * float("nan")
            (loss / pairs).backward()
            loss_sum += float(loss.detach())
            margin_sum += float(margins.sum())
            correct += float((margins > 0).sum())
            tokens += batch_tokens
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        sum_gradients(self.ranks, trainable)
        loss_sum, margin_sum, correct, tokens, stop = sum_across(
            self.ranks, [loss_sum, margin_sum, correct, tokens, float(self.stop.is_set())],
            self.device)
        if stop:
            self.stop.set()
        self.update(trainable, loss_sum, what="DPO loss",
                    advice="lower the learning rate or dpo_beta, or check the data")
        self.details = {"reward_margin": margin_sum / pairs, "reward_accuracy": correct / pairs}
        return loss_sum / pairs, int(tokens)

    def step_details(self) -> dict:
        return self.details

    def evaluate(self) -> float | None:
        """Validation DPO loss; the validation reward margin and accuracy go to eval_margins."""
        import torch

        if not self.validation:
            return None
        self.model.eval()
        losses, margins = [], []
        batch_size = self.spec.batch_size * 2
        ordered = sorted(self.validation, key=lambda pair: pair.length)
        with torch.no_grad(), self.autocast():
            for start in range(0, len(ordered), batch_size):
                batch, _ = self.pair_batch(ordered[start:start + batch_size])
                loss, margin = self.pair_losses(batch)
                losses.append(loss)
                margins.append(margin)
        self.model.train()
        margin = torch.cat(margins)
        self.eval_margins = {"val_reward_margin": float(margin.mean()),
                             "val_reward_accuracy": float((margin > 0).float().mean())}
        return float(torch.cat(losses).mean())

    def eval_details(self) -> dict:
        return {"val_loss": self.evaluate(), **self.eval_margins}

    def fit(self) -> dict:
        metrics = super().fit()
        if not metrics:  # ranks other than 0 report nothing
            return metrics
        # exp(DPO loss) is no perplexity; the reward figures say how far preferences moved.
        return {**metrics, "perplexity": None, **self.details, **self.eval_margins,
                "dpo_beta": self.spec.dpo_beta}

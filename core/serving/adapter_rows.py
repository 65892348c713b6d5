"""One batch, an adapter per row: LoRA deltas added only to the rows they belong to.

peft's own mixed-adapter batches gather and scatter each adapter's rows in every layer;
on a CPU that costs more than generating the answers one after the other. Here each
LoRA layer keeps its base output and a forward hook adds `B(A(x)) * scaling`, multiplied
by a per-row weight that is the scaling on the adapter's rows and 0 on the others, so a
base row gets exactly the base output and an adapter row exactly peft's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from core.errors import InvalidInput


def lora_layers(model, key: str) -> list:
    """The model's LoRA layers holding adapter `key`; only plain LoRA on linear layers."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import Linear

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and key in m.lora_A]
    for layer in layers:
        if not isinstance(layer, Linear) or key in layer.lora_variant:
            kind = type(layer).__name__ + (" (a variant such as DoRA)"
                                           if isinstance(layer, Linear) else "")
            raise InvalidInput(f"side by side needs plain LoRA on linear layers; this adapter "
                               f"has a {kind} layer")
    return layers


def _add_delta(lora_a, lora_b, row_weights):
    def hook(module, args, output):
        x = args[0].to(lora_a.weight.dtype)
        return (output + lora_b(lora_a(x)) * row_weights).to(output.dtype)

    return hook


@contextmanager
def adapter_rows(model, row_keys: list[str | None]) -> Iterator[None]:
    """Within: row i of every batch gets adapter `row_keys[i]` (None: the base weights)."""
    import torch

    with ExitStack() as stack:
        if hasattr(model, "disable_adapter"):
            stack.enter_context(model.disable_adapter())  # every layer computes the base output
        for key in {k for k in row_keys if k is not None}:
            for layer in lora_layers(model, key):
                lora_a, lora_b = layer.lora_A[key], layer.lora_B[key]
                rows = [layer.scaling[key] if k == key else 0.0 for k in row_keys]
                weights = torch.tensor(rows, dtype=lora_b.weight.dtype,
                                       device=lora_b.weight.device).view(-1, 1, 1)
                handle = layer.register_forward_hook(_add_delta(lora_a, lora_b, weights))
                stack.callback(handle.remove)
        yield

"""Dropdown choices several tabs offer: trainable datasets, adapters, models to compare."""

from __future__ import annotations

from core.services import Services
from ui.readable import named

KINDS = ("sft", "text", "preference")  # the dataset kinds a LoRA job trains on


def dataset_choices(services: Services, kinds=KINDS) -> list[tuple[str, str]]:
    return [(f"{d.name} v{d.version} · {d.kind} · {d.train_count} train / "
             f"{d.validation_count} val", d.id)
            for d in services.datasets.list() if d.kind in kinds]


def adapter_choices(services: Services) -> list[tuple[str, str]]:
    return [(named(m.name, m.id), m.id) for m in services.registry.list()]


def model_choices(services: Services) -> list[str]:
    return ["base", *(record.id for record in services.registry.list())]

"""Carrying a trained module over to tonight's Dataset: rows of id-indexed tables move by source id
(users, videos, domains, content tokens), rows new tonight get an initial vector, rows whose ids left
the window are dropped, and every other weight is copied as it is."""

from __future__ import annotations

import logging

import torch
from torch import nn

from rec_models.data.id_maps import IdMaps, matching_rows
from rec_models.models.base import CheckpointError

log = logging.getLogger(__name__)

# How a row new tonight starts: "mean" (the parent's average row plus the fresh module's small random
# init, so a new user or video starts as an average one) or "zero" (feature towers place it).
INITS = ("mean", "zero")


def carry_over(module: nn.Module, parent: nn.Module, id_tables: dict[str, tuple[str, str]],
               carried_buffers: tuple[str, ...], parent_ids: IdMaps, ids: IdMaps) -> dict[str, dict[str, int]]:
    """Fill ``module`` (freshly built for ``ids``) from ``parent`` (trained on ``parent_ids``).

    id_tables: state-dict key -> (id space of its rows, init of new rows). Parameters not in it, and
    ``carried_buffers``, must have the same shape in both and are copied. Other buffers are tonight's
    data (feature bags, histories) and stay as built. Returns per table the rows kept and the rows new.
    """
    source, target = parent.state_dict(), module.state_dict()
    parameters = {name for name, _ in module.named_parameters()}
    counts = {}
    with torch.no_grad():
        for key, value in target.items():
            if key in id_tables:
                space, init = id_tables[key]
                old = _required(source, key)
                old_ids, new_ids = getattr(parent_ids, space), getattr(ids, space)
                if old.shape[0] != len(old_ids) or old.shape[1:] != value.shape[1:]:
                    raise CheckpointError(f"checkpoint table {key} has shape {tuple(old.shape)}: it does not fit "
                                          f"{len(old_ids)} {space} ids and rows of {tuple(value.shape[1:])}")
                if init == "mean":
                    value += old.mean(dim=0) if len(old) else 0
                elif init == "zero":
                    value.zero_()
                else:
                    raise ValueError(f"init of {key} must be one of {INITS}, got {init!r}")
                new_rows, old_rows = matching_rows(old_ids, new_ids)
                value[torch.as_tensor(new_rows)] = old[torch.as_tensor(old_rows)].to(value.dtype)
                counts[key] = {"kept": len(new_rows), "new": len(new_ids) - len(new_rows),
                               "dropped": len(old_ids) - len(old_rows)}
            elif key in parameters or key in carried_buffers:
                old = _required(source, key)
                if old.shape != value.shape:
                    raise CheckpointError(f"checkpoint weight {key} has shape {tuple(old.shape)}, tonight's model "
                                          f"{tuple(value.shape)}: trained with other settings")
                value.copy_(old)
    return counts


def _required(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"checkpoint lacks weight {key}")
    return state[key]

"""Registered model architectures: how to rebuild a torch module from a build's config.

A build that ships bare weights (safetensors) names one of these in its metadata together with
a config dict; a distillation policy names one for its student. Each entry knows its module,
its forward inputs, its outputs and how it is best exported to ONNX.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Config = Mapping[str, Any]


class ArchitectureError(ValueError):
    """The architecture name, its config or the weights for it are wrong; the message says why."""


@dataclass(frozen=True)
class Architecture:
    build: Callable[[Config], nn.Module]
    input_names: tuple[str, ...]  # forward arguments in order; trailing ones may be left out
    required_inputs: int  # how many leading inputs must be provided
    output_names: tuple[str, ...]
    # Weights files name parameters of this submodule (dotted path, "" for the module itself).
    weights_root: str = ""
    weights_prefixes: tuple[str, ...] = ()  # stripped from weight names when present
    ignored_weights: tuple[str, ...] = ()  # regexes of weight names the module does not use
    # Keyword arguments of the ONNX Runtime transformer optimizer, from the config; None: none.
    transformer_optimizer: Callable[[Config], dict[str, Any]] | None = None
    legacy_export: bool = False  # TorchScript exporter (needed for attention fusion)
    sequence_inputs: bool = False  # inputs are (batch, sequence): both axes are dynamic
    # Mask input whose trailing padding the graph may skip (pooled outputs only), see padding.py.
    trim_padding_mask: str | None = None


class MLP(nn.Sequential):
    """Linear layers with ReLU between them: ``layers`` lists the widths, input first."""

    def __init__(self, layers: list[int]) -> None:
        modules: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(itertools.pairwise(layers)):
            modules.append(nn.Linear(width_in, width_out))
            if i < len(layers) - 2:
                modules.append(nn.ReLU())
        super().__init__(*modules)


class MeanPooledBert(nn.Module):
    """A BERT encoder, mean pooling over real tokens, then L2 normalisation.

    This is what sentence-transformers' all-MiniLM-L6-v2 computes.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        settings = {k: v for k, v in config.items() if not k.startswith("_")}
        bert_config = BertConfig(**settings)
        bert_config._attn_implementation = "eager"  # explicit attention: fusable after export
        self.bert = BertModel(bert_config, add_pooling_layer=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


def _mlp(config: Config) -> nn.Module:
    layers = config.get("layers")
    if not isinstance(layers, list) or len(layers) < 2 or not all(isinstance(n, int) and n > 0 for n in layers):
        raise ArchitectureError("the 'mlp' architecture needs 'layers': a list of at least two positive widths")
    return MLP(layers)


def _bert_optimizer(config: Config) -> dict[str, Any]:
    return {
        "model_type": "bert",
        "num_heads": int(config["num_attention_heads"]),
        "hidden_size": int(config["hidden_size"]),
    }


def _bert(config: Config) -> nn.Module:
    missing = {"hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"} - set(config)
    if missing:
        raise ArchitectureError(f"the 'bert-embedding' config lacks {', '.join(sorted(missing))}")
    return MeanPooledBert(config)


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(build=_mlp, input_names=("x",), required_inputs=1, output_names=("y",)),
    "bert-embedding": Architecture(
        build=_bert,
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        required_inputs=2,
        output_names=("embedding",),
        weights_root="bert",
        weights_prefixes=("bert.", "0.auto_model."),
        ignored_weights=(r"(^|\.)position_ids$", r"^pooler\."),
        transformer_optimizer=_bert_optimizer,
        legacy_export=True,
        sequence_inputs=True,
        trim_padding_mask="attention_mask",
    ),
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ArchitectureError(f"unknown architecture {name!r}; registered: {known}") from None


def build_module(name: str, config: Config, weights: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A module of architecture ``name`` in eval mode, with ``weights`` loaded strictly if given."""
    architecture = get_architecture(name)
    module = architecture.build(config)
    if weights is not None:
        load_weights(architecture, module, weights)
    return module.eval()


def load_weights(architecture: Architecture, module: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load ``weights`` into ``module``; every parameter must be given and every weight used."""
    target = module.get_submodule(architecture.weights_root)
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        for prefix in architecture.weights_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if not any(re.search(pattern, name) for pattern in architecture.ignored_weights):
            renamed[name] = tensor
    expected = target.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong = sorted(n for n in set(expected) & set(renamed) if expected[n].shape != renamed[n].shape)
    problems = [
        f"{what}: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if names
    ]
    if problems:
        raise ArchitectureError("the weights do not fit the architecture (" + "; ".join(problems) + ")")
    target.load_state_dict(renamed, strict=True)

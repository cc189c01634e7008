"""The bound a MoE layer's speed is held to at a batch size (benchmarks/moe_speed.py): its experts' GEMMs
alone against the dense-narrow control's FFN GEMMs on the same tokens.

A MoE layer of N experts of width w does the multiply-adds of one dense FFN of width w, split into N GEMM
pairs of about tokens/N rows. At small batches those small GEMMs run below the machine's GEMM efficiency,
so no forward of the layer can match dense-narrow there; how close it can come is what the best GEMM kernel
achieves on the layer's real groups. Each kernel is timed on its input already grouped (the routes the
model produces, hash routing on the token ids), with biases and the activation, and nothing else; the
whole layers (the model's MoE FFN with each experts implementation, routing, gathering, scattering and
LayerNorm included, and dense-narrow's BertIntermediate + BertOutput) are timed beside them in the same
rounds. A layer within a few percent of the best kernel's ratio loses nothing outside the GEMMs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

DENSE_GEMMS, DENSE_LAYER = "dense-narrow GEMMs", "dense-narrow layer"
GEMM_PREFIX, LAYER_PREFIX = "experts GEMMs ", "MoE layer "


def _eager_gemms(experts, groups, **_):
    """One addmm pair per expert that has rows (the eager loop's GEMMs)."""
    return torch.cat(
        [
            torch.addmm(
                experts.down_proj_bias[e],
                experts.act_fn(torch.addmm(experts.up_proj_bias[e], x, experts.up_proj[e])),
                experts.down_proj[e],
            )
            for e, x in groups
        ]
    )


def _grouped_gemms(experts, flat, offsets, up_bias_rows, down_bias_rows, **_):
    """torch's grouped GEMM over the rows sorted by expert, the biases added per row (as transformers'
    grouped_mm does)."""
    up = experts.act_fn(torch._grouped_mm(flat, experts.up_proj, offs=offsets) + up_bias_rows)
    return torch._grouped_mm(up, experts.down_proj, offs=offsets) + down_bias_rows


def _padded_gemms(experts, padded, **_):
    """One baddbmm per weight over the stacked experts, every group padded to the largest (padded_bmm's)."""
    up = experts.act_fn(torch.baddbmm(experts.up_proj_bias.unsqueeze(1), padded, experts.up_proj))
    return torch.baddbmm(experts.down_proj_bias.unsqueeze(1), up, experts.down_proj)


# Named as the experts implementation whose GEMMs they are.
KERNELS: dict[str, Callable] = {
    "eager": _eager_gemms,
    "grouped_mm": _grouped_gemms,
    "padded_bmm": _padded_gemms,
}


def grouped_mm_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch has a grouped GEMM for this device and dtype (transformers falls back to a loop without)."""
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        weight = torch.zeros(2, 16, 16, device=device, dtype=dtype)
        offsets = torch.tensor([1, 2], device=device, dtype=torch.int32)
        torch._grouped_mm(torch.zeros(2, 16, device=device, dtype=dtype), weight, offs=offsets)
    except (RuntimeError, NotImplementedError):
        return False
    return True


def group(x: torch.Tensor, expert_ids: torch.Tensor, num_experts: int, experts: nn.Module) -> dict:
    """The inputs every kernel takes, made from the rows x [tokens, hidden] and their experts [tokens]."""
    counts = torch.bincount(expert_ids, minlength=num_experts)
    sorted_ids, order = torch.sort(expert_ids, stable=True)
    flat = x.index_select(0, order)
    rows = counts.tolist()
    padded = x.new_zeros(num_experts, max(rows), x.shape[-1])
    for e, rows_e in enumerate(flat.split(rows)):
        padded[e, : len(rows_e)] = rows_e
    return {
        "groups": [(e, g) for e, g in enumerate(flat.split(rows)) if len(g)],
        "flat": flat,
        "offsets": torch.cumsum(counts, 0).to(torch.int32),
        "up_bias_rows": experts.up_proj_bias.index_select(0, sorted_ids),
        "down_bias_rows": experts.down_proj_bias.index_select(0, sorted_ids),
        "padded": padded,
        "counts": rows,
    }


def _dense_gemms(intermediate, output, x):
    return F.linear(
        intermediate.intermediate_act_fn(F.linear(x, intermediate.dense.weight, intermediate.dense.bias)),
        output.dense.weight,
        output.dense.bias,
    )


def parts(
    moe_models: dict[str, nn.Module],
    dense: nn.Module,
    tokens: int,
    kernels,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Callable[[], None]]:
    """What the bound times at `tokens` tokens, each a callable running all the layers of a forward: every
    kernel on the experts of the copied-layout MoEBERT, dense-narrow's FFN GEMMs, the MoE layer with every
    experts implementation in `moe_models` (name -> a hash-routed MoEBERT set to it; all alike but for the
    implementation) and dense-narrow's FFN layer. Hidden states are random; the routes are the model's,
    looked up from random token ids."""
    model = next(iter(moe_models.values()))
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(model.config.vocab_size, (tokens,), generator=gen).to(device)
    x = torch.randn(tokens, model.config.hidden_size, generator=gen).to(device=device, dtype=dtype)
    moe_layers = model.moe_layers()
    routes = model.hash_table[:, ids].long()  # stored in a small integer type; an index must be int64
    grouped = [group(x, r, layer.num_experts, layer.experts) for layer, r in zip(moe_layers, routes)]
    dense_layers = [(layer.intermediate, layer.output) for layer in model.backbone.layer_list(dense)]

    def gemms(kernel):
        return lambda: [kernel(layer.experts, **g) for layer, g in zip(moe_layers, grouped)]

    def moe_layer(model):
        def run():
            for layer, r in zip(model.moe_layers(), routes):
                layer.expert_ids = r
                layer(x, x)
                layer.expert_ids = None

        return run

    timed = {GEMM_PREFIX + name: gemms(KERNELS[name]) for name in kernels}
    timed[DENSE_GEMMS] = lambda: [_dense_gemms(i, o, x) for i, o in dense_layers]
    timed.update({LAYER_PREFIX + name: moe_layer(m) for name, m in moe_models.items()})
    timed[DENSE_LAYER] = lambda: [o(i(x), x) for i, o in dense_layers]
    return timed


def time_parts(
    timed: dict[str, Callable[[], None]], rounds: int, warmup: int = 1, device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """Seconds per call, one row per (part, repeat): the parts take turns in a rotating order every round,
    so a burst of other load hits them alike."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    names, rows = list(timed), []
    with torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                timed[name]()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                sync()
                start = time.perf_counter()
                timed[name]()
                sync()
                rows.append({"part": name, "repeat": r, "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def _paired(wide: pd.DataFrame, num: str, den: str) -> float:
    """The median of the round-by-round ratios."""
    return float((wide[num] / wide[den]).median())


def bound_table(part_timings: pd.DataFrame, model_ratios: dict[int, float] | None = None) -> pd.DataFrame:
    """Per batch size (part_timings: rows of time_parts with a batch_size column): every kernel's GEMM ratio to
    dense-narrow's and the best one (the bound), every implementation's layer ratio to dense-narrow's layer
    and the best one, the whole model's ratio (`model_ratios`, batch -> ratio, measured apart), and the best
    layer's distance above the bound (layer ratio / bound - 1). Ratios are medians of round-by-round ratios."""
    rows = []
    for batch, frame in part_timings.groupby("batch_size"):
        wide = frame.pivot_table(index="repeat", columns="part", values="seconds")
        kernels = {
            c[len(GEMM_PREFIX) :]: _paired(wide, c, DENSE_GEMMS) for c in wide if c.startswith(GEMM_PREFIX)
        }
        layers = {
            c[len(LAYER_PREFIX) :]: _paired(wide, c, DENSE_LAYER) for c in wide if c.startswith(LAYER_PREFIX)
        }
        best_kernel, best_layer = min(kernels, key=kernels.get), min(layers, key=layers.get)
        row = {"batch": batch}
        row |= {f"gemms[{k}]": v for k, v in kernels.items()}
        row |= {"bound": kernels[best_kernel], "bound_kernel": best_kernel}
        row |= {f"layer[{k}]": v for k, v in layers.items()}
        row |= {"layer": layers[best_layer], "layer_implementation": best_layer}
        if model_ratios is not None and batch in model_ratios:
            row["model"] = model_ratios[batch]
        row["layer_over_bound"] = layers[best_layer] / kernels[best_kernel] - 1
        row["rounds"] = len(wide)
        rows.append(row)
    return pd.DataFrame(rows)

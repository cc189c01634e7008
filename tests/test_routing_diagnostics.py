"""Routing diagnostics (routing_diagnostics.py): token shares, load CV and entropies equal a hand count of a
tiny model's routes; a gate forced onto one expert is flagged as collapsed, in the claims table too."""

import math

import pandas as pd
import pytest
import torch
from conftest import inputs, random_batch

from moebert.reporting.claims import check
from moebert.reporting.routing import collapsed_routers, write_routing_plots
from moebert.routing_diagnostics import RoutingRecorder, collapsed, flat_metrics, layer_stats
from moebert.students.moe import adapt


def hand_count(experts_of_token, batches, num_experts):
    """Per expert, the real tokens routed to it: a loop over every token of every row."""
    counts = [0] * num_experts
    for batch in batches:
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            for position, (token, real) in enumerate(zip(ids, mask)):
                if real:
                    counts[experts_of_token(token, position, ids)] += 1
    return counts


@pytest.mark.parametrize("router", ["hash-random", "hash-balance"])
def test_hash_router_diagnostics_are_the_tables_assignment_of_the_real_tokens(
    teacher, teacher_orders, router
):
    counts = torch.arange(50)
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router, seed=3, token_counts=counts)
    student.eval()
    batches = [random_batch(seed=1), random_batch(batch=3, seq=7, seed=2)]
    with RoutingRecorder(student) as recorder, torch.no_grad():
        for batch in batches:
            student(**inputs(batch))
    layers = recorder.layers()
    assert len(layers) == 2
    for layer, stats in enumerate(layers):
        table = student.hash_table[layer].tolist()
        count = hand_count(lambda token, *_, table=table: table[token], batches, 4)
        total = sum(count)
        assert stats["share"] == pytest.approx([c / total for c in count], abs=1e-12)
        mean = total / 4
        cv = math.sqrt(sum((c - mean) ** 2 for c in count) / 4) / mean
        assert stats["cv"] == pytest.approx(cv)
        assert stats["load_entropy"] == pytest.approx(
            -sum(c / total * math.log(c / total) for c in count if c)
        )
        assert "gate_entropy" not in stats
    # Recording stops with the block: the hooks are removed.
    with torch.no_grad():
        student(**inputs(batches[0]))
    assert recorder.layers() == layers


def test_gate_diagnostics_count_the_chosen_experts_and_their_probabilities(teacher, teacher_orders):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-token", seed=1)
    student.eval()
    batch = random_batch(seed=4)
    seen = []  # per layer: (expert, probabilities) of every token, padding included
    handles = [
        layer.router.register_forward_hook(
            lambda m, args, out, i=i: seen.append((i, out[0].clone(), m.probabilities(*args).clone()))
        )
        for i, layer in enumerate(student.moe_layers())
    ]
    with RoutingRecorder(student) as recorder, torch.no_grad():
        student(**inputs(batch))
    for handle in handles:
        handle.remove()
    real = batch["attention_mask"].reshape(-1).bool()
    for (i, experts, probs), stats in zip(seen, recorder.layers()):
        count = torch.bincount(experts[real], minlength=4).tolist()
        assert stats["share"] == pytest.approx([c / sum(count) for c in count])
        p = probs[real].double()
        assert stats["chosen_probability"] == pytest.approx(float(p.max(-1).values.mean()))
        assert stats["gate_entropy"] == pytest.approx(float(-(p * p.log()).sum(-1).mean()))


def test_a_gate_forced_onto_one_expert_is_flagged(teacher, teacher_orders):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-token", seed=1)
    student.eval()
    with torch.no_grad():  # zero gates: every token ties; in layer 1 expert 2's logit is raised by 50
        for layer in student.moe_layers():
            layer.router.gate.weight.zero_()
    forced = student.moe_layers()[1].router
    forced.gate.register_forward_hook(lambda m, args, out: out + torch.tensor([0.0, 0.0, 50.0, 0.0]))
    with RoutingRecorder(student) as recorder, torch.no_grad():
        student(**inputs(random_batch(seed=5)))
    layers = recorder.layers()
    assert layers[1]["share"] == [0.0, 0.0, 1.0, 0.0]
    assert layers[1]["cv"] == pytest.approx(math.sqrt(3)) and layers[1]["load_entropy"] == 0.0
    assert collapsed(layers) == [(0, 1, 0.0), (0, 2, 0.0), (0, 3, 0.0), (1, 0, 0.0), (1, 1, 0.0), (1, 3, 0.0)]
    assert layers[1]["chosen_probability"] == pytest.approx(1.0)
    # Zero weights: every token ties, argmax takes expert 0 and the probability is 1/4.
    assert layers[0]["share"] == [1.0, 0.0, 0.0, 0.0] and layers[0]["chosen_probability"] == pytest.approx(
        0.25
    )
    assert layers[0]["gate_entropy"] == pytest.approx(math.log(4))

    runs = [{"method": "gated", "task": "rte", "seed": 0, "routing": {"RTE": layers}}]
    runs.append(
        {
            "method": "hashed",
            "task": "rte",
            "seed": 0,
            "routing": {"RTE": [layer_stats(torch.ones(4), 0, 0, False)]},
        }
    )
    flags = collapsed_routers(runs)
    assert flags == {"gated": "collapsed router (RTE seed 0 layer 0 expert 1: 0.0% of tokens; 5 more)"}
    main = pd.DataFrame({"RTE": [70.0, 60.0], "avg": [70.0, 60.0]}, index=["gated", "hashed"])
    row = check({"claim": "c", "method": "gated", "vs": "hashed", "at_least": 0.0}, main, "avg", None, flags)
    assert row["routing"] == f"gated: {flags['gated']}"
    assert flat_metrics({"RTE": layers})["routing/RTE/layer1/expert2_share"] == 1.0


def test_routing_heatmaps_one_per_split(tmp_path):
    stats = [layer_stats(torch.tensor([1.0, 1.0, 2.0, 0.0]), 0, 0, False)] * 2
    runs = [
        {"method": m, "task": "mnli", "seed": 0, "routing": {"MNLI-m": stats, "MNLI-mm": stats}} for m in "ab"
    ]
    (tmp_path / "routing_old.png").write_text("stale")
    written = write_routing_plots(runs, tmp_path)
    assert sorted(p.name for p in written) == [
        "routing_mnli-m.png",
        "routing_mnli-m.svg",
        "routing_mnli-mm.png",
        "routing_mnli-mm.svg",
    ]
    assert not (tmp_path / "routing_old.png").exists()


def test_evaluate_logs_the_diagnostics_and_the_examples_to_the_run(tmp_path):
    from moebert.stages.evaluate import log_results

    class Run:
        def __init__(self):
            self.metrics, self.artifacts = {}, []

        def log_metrics(self, metrics):
            self.metrics.update(metrics)

        def log_artifact(self, path):
            self.artifacts.append(path)

    stats = layer_stats(torch.tensor([3.0, 1.0]), 0.0, 0.0, False)
    record = {
        "results": {"RTE": {"accuracy": 60.0}},
        "params": {"total": 10},
        "routing": {"RTE": [stats]},
        "examples": "seed0.examples.csv",
    }
    run = Run()
    log_results(run, record, tmp_path / "seed0.json")
    assert run.metrics["routing/RTE/layer0/expert0_share"] == 0.75
    assert run.metrics["routing/RTE/layer0/cv"] == pytest.approx(0.5)  # shares 0.75, 0.25: std 0.25, mean 0.5
    assert run.artifacts == [tmp_path / "seed0.json", tmp_path / "seed0.examples.csv"]


def test_a_sentence_gate_counts_each_sentences_real_tokens(teacher, teacher_orders):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-sentence", seed=2)
    student.eval()
    batch = random_batch(seed=6)
    seen = []
    handles = [
        layer.router.register_forward_hook(lambda m, args, out: seen.append(m.probabilities(*args).clone()))
        for layer in student.moe_layers()
    ]
    with RoutingRecorder(student) as recorder, torch.no_grad():
        student(**inputs(batch))
    for handle in handles:
        handle.remove()
    lengths = batch["attention_mask"].sum(1).tolist()
    for probs, stats in zip(seen, recorder.layers()):
        count = [0] * 4
        for sentence, length in zip(probs.argmax(-1).tolist(), lengths):
            count[sentence] += length  # every real token of the sentence goes to its expert
        assert stats["share"] == pytest.approx([c / sum(lengths) for c in count])
        chosen = sum(float(p.max()) * n for p, n in zip(probs, lengths)) / sum(lengths)
        assert stats["chosen_probability"] == pytest.approx(chosen)

"""SQuAD data, windows, answer search and the QA losses and heads (tasks/squad.py, tasks/qa.py)."""

import inspect
import json

import datasets
import numpy as np
import pytest
import torch
from conftest import random_batch, randomize_biases
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

from moebert.errors import MoebertError
from moebert.hub import PACKAGED_MINILM
from moebert.models.loading import load_model, resolve_model
from moebert.models.modeling import MoEBertForQuestionAnswering
from moebert.students.moe import adapt
from moebert.tasks import get_task
from moebert.tasks import squad as squad_data
from moebert.tasks.qa import (
    EvalWindows,
    answer_positions,
    best_answers,
    eval_features,
    span_loss,
    train_features,
)
from moebert.training.distillation import span_prediction_loss
from moebert.training.importance import importance_scores, importance_scores_autograd

V1, V2 = get_task("squad"), get_task("squad_v2")
CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."


def _document(version="1.1", articles=3):
    data = []
    for a in range(articles):
        qas = [
            {
                "id": f"q{a}-0",
                "question": "When was the tower built?",
                "answers": [{"text": "1889", "answer_start": CONTEXT.index("1889")}],
            },
            {
                "id": f"q{a}-1",
                "question": "Where does it stand?",
                "answers": [
                    {"text": "Paris", "answer_start": CONTEXT.index("Paris")},
                    {"text": "in Paris", "answer_start": CONTEXT.index("in Paris")},
                ],
            },
        ]
        if version == "2.0":
            qas.append({"id": f"q{a}-2", "question": "Who painted it?", "answers": [], "is_impossible": True})
        data.append({"title": f"Article_{a}", "paragraphs": [{"context": CONTEXT, "qas": qas}]})
    return {"version": version, "data": data}


def _write(tmp_path, document, name="dev-v1.1.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model(PACKAGED_MINILM))


# ---------------------------------------------------------------------------------------------
# Data files


def test_official_file_loads_into_hub_rows(tmp_path):
    _write(tmp_path, _document())
    rows = squad_data.load_split(V1, tmp_path, "dev")
    assert rows.column_names == ["id", "title", "context", "question", "answers"]
    assert rows["id"] == ["q0-0", "q0-1", "q1-0", "q1-1", "q2-0", "q2-1"]
    assert rows[1]["answers"] == {"text": ["Paris", "in Paris"], "answer_start": [67, 64]}
    kept = sorted(np.random.default_rng(0).choice(6, size=2, replace=False))
    assert list(squad_data.load_split(V1, tmp_path, "dev", max_rows=2, seed=0)["id"]) == [
        rows["id"][i] for i in kept
    ]


def test_v2_unanswerable_questions_have_empty_answers(tmp_path):
    _write(tmp_path, _document("2.0"), "dev-v2.0.json")
    rows = squad_data.load_split(V2, tmp_path, "dev")
    assert rows[2]["answers"] == {"text": [], "answer_start": []}


def _broken(change):
    document = _document()
    change(document["data"][1]["paragraphs"][0]["qas"])
    return document


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "dev-v1.1.json: not valid JSON"),
        ('{"data": 3}', "not a SQuAD file: expected an object with a 'data' list"),
        (_broken(lambda qas: qas[0].pop("id")), "article 1 (Article_1), paragraph 0, question 0: no 'id'"),
        (
            _broken(lambda qas: qas[1]["answers"][0].update(answer_start=3)),
            "question q1-1: answer 'Paris' does not match the context at answer_start 3 (the context has ' Eiff' there)",
        ),
        (
            _broken(lambda qas: qas[0].update(answers=[])),
            "question q1-0: has no answer (every SQuAD v1.1 question",
        ),
        (
            _broken(lambda qas: qas[0].update(is_impossible=True)),
            "question q1-0: is_impossible is set, but SQuAD v1.1",
        ),
        (_broken(lambda qas: qas[1].update(id="q1-0")), "question id q1-0 appears twice"),
    ],
)
def test_malformed_files_are_refused_with_file_question_and_reason(tmp_path, document, message):
    path = _write(tmp_path, document)
    out = tmp_path / "out"
    with pytest.raises(MoebertError) as err:
        squad_data.prepare(V1, tmp_path, out, eval_articles=1)
    assert str(path) in str(err.value) and message in str(err.value)
    assert not out.exists()


def test_v2_impossible_question_with_answers_is_refused(tmp_path):
    document = _document("2.0")
    document["data"][0]["paragraphs"][0]["qas"][2]["answers"] = [{"text": "1889", "answer_start": 30}]
    _write(tmp_path, document, "dev-v2.0.json")
    with pytest.raises(MoebertError, match="question q0-2: is_impossible is set but it lists 1 answer"):
        squad_data.load_split(V2, tmp_path, "dev")


def test_article_split_is_disjoint_seeded_and_labelled_non_standard(tmp_path):
    _write(tmp_path, _document(articles=5))
    target = squad_data.prepare(V1, tmp_path, tmp_path / "out", eval_articles=2, split_seed=3)
    train = squad_data.load_split(V1, tmp_path / "out", "train")
    dev = squad_data.load_split(V1, tmp_path / "out", "dev")
    assert set(train["title"]).isdisjoint(dev["title"]) and len(set(dev["title"])) == 2
    assert len(train) + len(dev) == 10
    held = sorted(np.random.default_rng(3).permutation(5)[:2].tolist())
    assert sorted(set(dev["title"])) == [f"Article_{i}" for i in held]
    note = squad_data.split_note(V1, tmp_path / "out")
    assert note.startswith("non-standard split: train and dev are article-disjoint parts of dev-v1.1.json")
    assert "3 and 2 articles, 6 and 4 questions, seed 3" in note
    assert json.loads((target / "split.json").read_text())["dev_titles"] == sorted(set(dev["title"]))
    again = squad_data.prepare(V1, tmp_path, tmp_path / "again", eval_articles=2, split_seed=3)
    assert (again / "dev.json").read_text() == (target / "dev.json").read_text()


def test_article_split_refuses_impossible_sizes(tmp_path):
    _write(tmp_path, _document(articles=2))
    with pytest.raises(
        MoebertError, match="eval_articles must be between 1 and 1 \\(the file has 2 articles\\)"
    ):
        squad_data.prepare(V1, tmp_path, tmp_path / "out", eval_articles=2)


def test_prepared_copy_round_trips_and_needs_both_files(tmp_path):
    _write(tmp_path, _document())
    with pytest.raises(MoebertError, match="the SQuAD-v1.1 'train' split is neither"):
        squad_data.prepare(V1, tmp_path, tmp_path / "out")
    _write(tmp_path, _document(articles=2), "train-v1.1.json")
    squad_data.prepare(V1, tmp_path, tmp_path / "out")
    assert (
        squad_data.load_split(V1, tmp_path / "out", "train").to_dict()
        == squad_data.load_split(V1, tmp_path, "train").to_dict()
    )
    assert squad_data.split_note(V1, tmp_path / "out") is None


def test_the_shared_dev_file_validates(tmp_path):
    from conftest import REPO

    source = REPO.parent / "shared" / "data" / "squad"
    if not (source / "dev-v1.1.json").is_file():
        pytest.skip("shared SQuAD dev file not found")
    rows = squad_data.load_split(V1, source, "dev")
    assert len(rows) == 10570 and len(set(rows["title"])) == 48


# ---------------------------------------------------------------------------------------------
# Windows


def _rows(question, context, answer=None):
    start = [] if answer is None else [context.index(answer)]
    return datasets.Dataset.from_dict(
        {
            "id": ["x"],
            "title": ["t"],
            "context": [context],
            "question": [question],
            "answers": [{"text": [] if answer is None else [answer], "answer_start": start}],
        }
    )


LONG = ("Filler words come first here. " * 6) + "The answer is Gustave Eiffel himself. " + ("More text. " * 6)


def test_training_windows_point_at_the_answer_or_at_cls(tokenizer):
    rows = _rows("Who built it?", LONG, "Gustave Eiffel")
    features = train_features(rows, tokenizer, max_length=32, doc_stride=8)
    assert len(features) > 2 and all(len(ids) <= 32 for ids in features["input_ids"])
    found = [
        (s, e) for s, e in zip(features["start_positions"], features["end_positions"]) if (s, e) != (0, 0)
    ]
    assert found, "some window holds the answer"
    for window, s, e in zip(features["input_ids"], features["start_positions"], features["end_positions"]):
        if (s, e) != (0, 0):
            assert tokenizer.decode(window[s : e + 1]) == "gustave eiffel"
    # The first window ends long before the answer.
    assert (features["start_positions"][0], features["end_positions"][0]) == (0, 0)
    assert set(features.column_names) >= {"input_ids", "token_type_ids", "attention_mask"}


def test_training_answer_ends_on_its_last_character(tokenizer):
    """The answer's last token is a one-character word piece right after another ("##6" "##s") and right
    before punctuation: one character less or more would end the span a token early or late."""
    rows = _rows("Which?", "They sold the 80486s, then others.", "the 80486s")
    features = train_features(rows, tokenizer, max_length=32, doc_stride=8)
    ((window, start, end),) = zip(
        features["input_ids"], features["start_positions"], features["end_positions"]
    )
    assert tokenizer.convert_ids_to_tokens(window[start : end + 1]) == ["the", "80", "##48", "##6", "##s"]


def test_unanswerable_question_points_at_cls_in_every_window(tokenizer):
    features = train_features(_rows("Who?", LONG), tokenizer, max_length=32, doc_stride=8)
    assert set(features["start_positions"]) == {0} and set(features["end_positions"]) == {0}


def test_answer_positions_by_hand():
    offsets = [(0, 0), (0, 3), (0, 0), (0, 4), (5, 9), (10, 14), (0, 0)]  # CLS q SEP c c c SEP
    assert answer_positions(offsets, (3, 5), 5, 14) == (4, 5)
    assert answer_positions(offsets, (3, 5), 6, 8) == (4, 4)  # inside one token
    assert answer_positions(offsets, (3, 5), 12, 20) == (0, 0)  # runs past the window


def test_eval_windows_give_offsets_to_context_tokens_only(tokenizer):
    rows = _rows("Who built it?", LONG, "Gustave Eiffel")
    windows = eval_features(rows, tokenizer, max_length=32, doc_stride=8)
    encoded = tokenizer(
        ["Who built it?"],
        [LONG],
        truncation="only_second",
        max_length=32,
        stride=8,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    assert len(windows.offsets) == len(encoded["input_ids"]) > 2 and set(windows.example) == {0}
    for w, offsets in enumerate(windows.offsets):
        sequence = encoded.sequence_ids(w)
        assert [span is not None for span in offsets] == [
            s == 1 for s in sequence
        ]  # no [CLS], question, [SEP]
        assert [span for span in offsets if span] == [
            tuple(o) for o, s in zip(encoded["offset_mapping"][w], sequence) if s == 1
        ]


def test_windows_refuse_a_stride_as_long_as_the_window(tokenizer):
    with pytest.raises(MoebertError, match="doc_stride 32 must be smaller than max_length 32"):
        train_features(_rows("Who?", LONG), tokenizer, max_length=32, doc_stride=32)


# ---------------------------------------------------------------------------------------------
# Answer search


def _search(tokenizer, rows, logits_for, **options):
    windows = eval_features(rows, tokenizer, max_length=32, doc_stride=8)
    starts, ends = zip(*(logits_for(w, windows) for w in range(len(windows.example))))
    return windows, best_answers(rows, windows, list(starts), list(ends), **options)


def test_the_answer_in_the_second_window_is_found(tokenizer):
    rows = _rows("Who built it?", LONG, "Gustave Eiffel")
    features = train_features(rows, tokenizer, max_length=32, doc_stride=8)
    target = next(w for w, s in enumerate(features["start_positions"]) if s)
    assert target >= 1

    def logits(w, windows):
        n = len(windows.offsets[w])
        starts, ends = np.zeros(n), np.zeros(n)
        if w == target:
            starts[features["start_positions"][w]] = 5
            ends[features["end_positions"][w]] = 5
        else:  # a weaker span in the first window
            starts[10], ends[11] = 3, 3
        return starts, ends

    _, (answers, nulls) = _search(tokenizer, rows, logits, with_null=False)
    assert answers == {"x": "Gustave Eiffel"} and nulls == {}


def test_spans_never_cross_into_the_question_nor_run_backwards(tokenizer):
    rows = _rows("Who built the tower?", CONTEXT, "1889")

    def logits(w, windows):
        offsets = windows.offsets[w]
        context = [t for t, span in enumerate(offsets) if span is not None]
        starts, ends = np.full(len(offsets), -10.0), np.full(len(offsets), -10.0)
        if w == 0:  # the other windows score -10 everywhere
            c = context
            starts[2], ends[3] = 9, 9  # question tokens: never part of a span
            starts[c[7]], ends[c[6]] = 8, 8  # (c7, c6) runs backwards
            starts[c[0]] = 7  # (c0, c6), (c0, c4): longer than max_answer_length
            starts[c[3]], ends[c[4]] = 1, 1  # (c3, c6) is 4 tokens; (c3, c4) is the only legal pair
        return starts, ends

    windows, (answers, _) = _search(tokenizer, rows, logits, with_null=False, n_best=4, max_answer_length=3)
    context = [t for t, span in enumerate(windows.offsets[0]) if span is not None]
    first, last = windows.offsets[0][context[3]], windows.offsets[0][context[4]]
    assert len(context) > 7
    assert answers["x"] == CONTEXT[first[0] : last[1]]


def test_null_threshold_decides_between_empty_and_span():
    context = "abc def"
    rows = _rows("q", context, "def")
    windows = EvalWindows(inputs=None, example=[0], offsets=[[None, None, (0, 3), (4, 7), None]])
    starts = [np.array([2.0, 0, 0, 1.5, 0])]
    ends = [np.array([1.0, 0, 0, 1.0, 0])]  # null 3.0, best span "def" 2.5
    answers, nulls = best_answers(rows, windows, starts, ends, with_null=True)
    assert answers == {"x": ""} and nulls == {"x": pytest.approx(0.5)}
    answers, _ = best_answers(rows, windows, starts, ends, with_null=True, null_threshold=0.5)
    assert answers == {"x": "def"}  # not above the threshold: the span stands
    answers, _ = best_answers(rows, windows, starts, ends, with_null=False)
    assert answers == {"x": "def"}


def test_null_score_is_the_lowest_over_the_windows():
    rows = _rows("q", "abc def", "def")
    windows = EvalWindows(
        inputs=None, example=[0, 0, 0], offsets=[[None, (0, 3)], [None, (4, 7)], [None, (4, 7)]]
    )
    starts = [np.array([5.0, 1.0]), np.array([1.0, 2.0]), np.array([2.0, 0.5])]
    ends = [np.array([5.0, 1.0]), np.array([1.5, 2.0]), np.array([3.0, 0.5])]
    answers, nulls = best_answers(rows, windows, starts, ends, with_null=True)
    # Nulls 10, 2.5 and 5: the lowest is neither the first window's nor the last's.
    assert nulls == {"x": pytest.approx(2.5 - 4.0)} and answers == {"x": "def"}


# ---------------------------------------------------------------------------------------------
# Losses and the QA heads


def tiny_qa(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return randomize_biases(BertForQuestionAnswering(config), seed).eval()


def qa_batch(seed=1):
    batch = random_batch(seed=seed)
    del batch["labels"]
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, 3, (4,), generator=gen)  # inside every window (each at least 5 tokens long)
    batch.update(start_positions=starts, end_positions=starts + torch.randint(0, 3, (4,), generator=gen))
    return batch


def test_qa_importance_equals_per_example_autograd():
    model = tiny_qa()
    batches = [qa_batch(1), qa_batch(2)]
    fast = importance_scores(model, batches, progress=False)
    slow = importance_scores_autograd(model, batches)
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=1e-4, atol=1e-6)
    assert all(s.abs().sum() > 0 for s in fast)


def test_qa_window_loss_by_hand_and_without_padding_the_model_loss():
    model = tiny_qa()
    batch = qa_batch()
    out = model(**batch)
    mask = batch["attention_mask"]
    per_window = span_loss(
        out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"], mask
    )
    by_hand = []
    for i in range(4):
        keep = mask[i].bool()
        start = -out.start_logits[i][keep].log_softmax(-1)[batch["start_positions"][i]]
        end = -out.end_logits[i][keep].log_softmax(-1)[batch["end_positions"][i]]
        by_hand.append((start + end) / 2)
    torch.testing.assert_close(per_window, torch.stack(by_hand))
    assert not torch.isclose(per_window.mean(), out.loss)  # the QA head's own loss runs over the padding
    unpadded = span_loss(
        out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"], None
    )
    torch.testing.assert_close(unpadded.mean(), out.loss)


def test_a_windows_loss_is_the_same_alone_and_in_a_padded_batch(tmp_path):
    """Training (TaskTrainer.loss_terms), importance and distillation see a window's own positions only."""
    from transformers import TrainingArguments

    from moebert.training.importance import _forward_loss
    from moebert.training.trainer import TaskTrainer

    model = tiny_qa()
    trainer = TaskTrainer(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    )
    batch = qa_batch()
    short = 2  # window 2 is shorter than the batch's longest
    length = int(batch["attention_mask"][short].sum())
    assert length < batch["input_ids"].shape[1]
    alone = {
        k: v[short : short + 1, :length] if v.dim() == 2 else v[short : short + 1] for k, v in batch.items()
    }
    in_batch = _forward_loss(model, batch)[short]
    torch.testing.assert_close(_forward_loss(model, alone)[0], in_batch)
    _, terms = trainer.loss_terms(model, alone)
    torch.testing.assert_close(terms["task"][1], in_batch)
    _, terms = trainer.loss_terms(model, batch)
    torch.testing.assert_close(terms["task"][1], _forward_loss(model, batch).mean())


def test_span_distillation_loss_by_hand_leaves_padding_out():
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    logits = lambda: torch.randn(2, 4, generator=gen)
    student = type("Out", (), {"start_logits": logits(), "end_logits": logits()})
    teacher = type("Out", (), {"start_logits": logits(), "end_logits": logits()})

    def sym_kl(s, t):
        total = 0
        for row in range(2):
            keep = mask[row].bool()
            p, q = t[row][keep].softmax(-1), s[row][keep].softmax(-1)
            total += 0.5 * ((p * (p / q).log()).sum() + (q * (q / p).log()).sum())
        return total / 2

    expected = (
        sym_kl(student.start_logits, teacher.start_logits) + sym_kl(student.end_logits, teacher.end_logits)
    ) / 2
    torch.testing.assert_close(span_prediction_loss(student, teacher, mask), expected)
    unmasked = span_prediction_loss(student, teacher, None)
    assert not torch.isclose(unmasked, expected)


def _orders(model):
    return [torch.randperm(64, generator=torch.Generator().manual_seed(i)) for i in range(2)]


def test_moe_qa_student_with_every_neuron_shared_equals_the_teacher(tmp_path):
    teacher = tiny_qa()
    student, _ = adapt(teacher, _orders(teacher), num_experts=2, expert_dim=64, shared_dim=64)
    assert isinstance(student, MoEBertForQuestionAnswering)
    batch = {k: v for k, v in qa_batch().items() if "positions" not in k}
    expected = teacher(**batch)
    student.eval()
    got = student(**batch)
    torch.testing.assert_close(got.start_logits, expected.start_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.end_logits, expected.end_logits, rtol=1e-5, atol=1e-5)
    student.save_pretrained(tmp_path / "moe")
    loaded = load_model(str(tmp_path / "moe")).eval()
    assert isinstance(loaded, MoEBertForQuestionAnswering)
    torch.testing.assert_close(loaded(**batch).start_logits, got.start_logits)


def test_moe_qa_forward_names_the_position_columns_and_returns_a_loss():
    student, _ = adapt(tiny_qa(), _orders(None), num_experts=2, expert_dim=32, shared_dim=16)
    out = student(**qa_batch())
    assert out.loss is not None and out.balance_loss is None
    assert {"start_positions", "end_positions", "token_type_ids"} <= set(
        inspect.signature(student.forward).parameters
    )


def test_dense_baselines_keep_the_qa_head():
    from moebert.students.dense_narrow import dense_narrow
    from moebert.students.distil_half import distil_half

    teacher = tiny_qa()
    half, _ = distil_half(teacher)
    narrow, _ = dense_narrow(teacher, _orders(teacher), 64)
    narrow.eval()
    assert type(half) is BertForQuestionAnswering and type(narrow) is BertForQuestionAnswering
    torch.testing.assert_close(half.qa_outputs.weight, teacher.qa_outputs.weight)
    batch = {k: v for k, v in qa_batch().items() if "positions" not in k}
    torch.testing.assert_close(
        narrow(**batch).start_logits, teacher(**batch).start_logits, rtol=1e-5, atol=1e-5
    )
    assert half.config.num_hidden_layers == 1


# ---------------------------------------------------------------------------------------------
# Through the CLI


def _cli(*args):
    from moebert.cli import main

    return main([str(a) for a in args])


def test_qa_pipeline_stage_by_stage(tiny_model_dir, tmp_path):
    _write(tmp_path, _document(articles=6))
    data = tmp_path / "prepared"
    assert (
        _cli("prepare-data", "--task", "squad", "--source", tmp_path, "--output", data, "--eval-articles", 2)
        == 0
    )
    task = ["--task", "squad", "--data", data, "--max-length", 48, "--doc-stride", 16]
    rows = ["--max-train-samples", 8, "--batch-size", 4, "--epochs", 1]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert _cli("finetune", *task, "--model", tiny_model_dir, "--output", teacher, *rows) == 0
    assert isinstance(load_model(str(teacher)), BertForQuestionAnswering)
    assert (
        _cli(
            "importance",
            *task,
            "--model",
            teacher,
            "--output",
            tmp_path / "imp.safetensors",
            "--max-samples",
            8,
        )
        == 0
    )
    assert (
        _cli(
            "adapt",
            "--model",
            teacher,
            "--importance",
            tmp_path / "imp.safetensors",
            "--output",
            tmp_path / "moe",
            "--num-experts",
            4,
            "--expert-dim",
            24,
            "--shared-dim",
            16,
        )
        == 0
    )
    assert (
        _cli(
            "distill", *task, "--teacher", teacher, "--student", tmp_path / "moe", "--output", student, *rows
        )
        == 0
    )
    assert isinstance(load_model(str(student)), MoEBertForQuestionAnswering)
    assert (
        _cli(
            "evaluate",
            *task,
            "--model",
            student,
            "--output",
            tmp_path / "eval.json",
            "--method",
            "moebert",
            "--n-best",
            5,
        )
        == 0
    )
    record = json.loads((tmp_path / "eval.json").read_text())
    assert set(record["results"]["SQuAD-v1.1"]) == {"exact_match", "f1"}
    assert record["num_examples"] == {"SQuAD-v1.1": 4}
    dev = squad_data.load_split(V1, data, "dev")
    assert sorted(record["predictions"]["SQuAD-v1.1"]) == sorted(dev["id"])
    assert record["qa_settings"] == {
        "doc_stride": 16,
        "n_best": 5,
        "max_answer_length": 30,
        "null_threshold": 0.0,
    }
    assert record["data_note"].startswith("non-standard split")


def test_evaluate_answers_by_the_null_threshold(tiny_model_dir, tmp_path):
    """SQuAD v2.0: a threshold below every null - span difference empties every answer, one above them keeps
    every span; the record keeps the threshold it used."""
    _write(tmp_path, _document(version="2.0", articles=4), "dev-v2.0.json")
    data = tmp_path / "prepared"
    assert (
        _cli(
            "prepare-data", "--task", "squad_v2", "--source", tmp_path, "--output", data, "--eval-articles", 2
        )
        == 0
    )
    model = tmp_path / "qa"
    BertForQuestionAnswering.from_pretrained(tiny_model_dir).save_pretrained(model)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model)
    answers = {}
    for threshold in (-1e9, 1e9):
        out = tmp_path / f"{threshold}.json"
        assert (
            _cli(
                "evaluate",
                "--task",
                "squad_v2",
                "--data",
                data,
                "--model",
                model,
                "--output",
                out,
                "--max-length",
                48,
                "--doc-stride",
                16,
                "--null-threshold",
                threshold,
            )
            == 0
        )
        record = json.loads(out.read_text())
        assert record["qa_settings"]["null_threshold"] == threshold
        answers[threshold] = list(record["predictions"]["SQuAD-v2.0"].values())
    assert len(answers[-1e9]) == 6 and set(answers[-1e9]) == {""}
    assert "" not in answers[1e9]


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--task", "squad", "--majority"], "--majority: squad has no label to count"),
        (
            ["finetune", "--task", "mrpc", "--doc-stride", "16"],
            "--doc-stride: only question-answering tasks take it",
        ),
        (
            ["evaluate", "--task", "rte", "--null-threshold", "1"],
            "--null-threshold: only question-answering tasks",
        ),
        (
            ["prepare-data", "--task", "sst2", "--eval-articles", "3"],
            "--eval-articles: only question-answering tasks",
        ),
    ],
)
def test_qa_options_where_they_do_not_apply_are_refused(args, message, tiny_model_dir, tmp_path, capsys):
    command, *rest = args
    paths = {
        "evaluate": ["--data", tmp_path, "--output", tmp_path / "m.json"],
        "finetune": ["--data", tmp_path, "--model", tiny_model_dir, "--output", tmp_path / "t"],
        "prepare-data": ["--source", tmp_path, "--output", tmp_path / "d"],
    }[command]
    assert _cli(command, *rest, *paths) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("m.json", "t", "d"))


def test_a_classifier_is_refused_where_a_qa_model_is_needed(tiny_model_dir, tmp_path, capsys):
    _write(tmp_path, _document(articles=3))
    assert (
        _cli(
            "evaluate",
            "--task",
            "squad",
            "--data",
            tmp_path,
            "--model",
            tiny_model_dir,
            "--output",
            tmp_path / "m.json",
        )
        == 2
    )
    assert "has a classification head, but task squad needs question-answering" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_hub_rows_pass_the_same_checks_as_a_file(tmp_path, monkeypatch):
    _write(tmp_path, _document("2.0"), "dev-v2.0.json")
    from_file = squad_data.load_split(V2, tmp_path, "dev")
    calls = []

    def fake_hub(name, split):  # the hub's rajpurkar/squad_v2 has these columns, one row per question
        calls.append((name, split))
        return from_file

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    assert squad_data.load_split(V2, "hub", "dev").to_dict() == from_file.to_dict()
    assert calls == [("rajpurkar/squad_v2", "validation")]
    broken = from_file.to_dict()
    broken["answers"][0] = {"text": ["nowhere"], "answer_start": [0]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_dict(broken))
    with pytest.raises(
        MoebertError, match="rajpurkar/squad_v2/validation: question q0-0: answer 'nowhere' does not"
    ):
        squad_data.load_split(V2, "hub", "dev")

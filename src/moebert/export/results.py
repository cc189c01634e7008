"""The numbers of a model card, copied from the metrics files of the model and its teacher (never recomputed):
the parameter counts and the dev scores."""

from __future__ import annotations

from moebert.export.metadata import METRIC_NAMES


def _number(value) -> str:
    return (
        f"{value:.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parameters_section(counts: dict, record: dict | None, teacher: dict | None, moe: bool) -> str:
    """The model's parameter counts (equal to its metrics file's, where there is one) and its teacher's."""
    source = (
        "as the metrics file records them"
        if record is not None
        else "counted on the exported model (no metrics file given)"
    )
    rows = [
        [
            "effective (what a token uses" + (": one expert per layer)" if moe else ")"),
            _number(counts["effective"]),
        ],
        ["total (encoder with embeddings and pooler)", _number(counts["total"])],
        ["task head", _number(counts["head"])],
    ]
    if counts["per_expert"]:
        rows.append(["one more expert in every layer", _number(counts["per_expert"])])
    header = ["parameters", "this model"]
    if teacher and isinstance(teacher.get("params"), dict):
        header.append("teacher")
        for row, key in zip(rows, ("effective", "total", "head", "per_expert")):
            # A dense teacher has no experts: "-", not 0.
            value = teacher["params"].get(key)
            row.append("-" if value is None or (key == "per_expert" and not value) else _number(value))
    return "\n".join(
        [
            "## Parameters",
            "",
            f"Counted as the MoEBERT paper counts them (the encoder without the task head), {source}.",
            "",
            table(header, rows),
        ]
    )


def results_section(record: dict | None, teacher: dict | None) -> str:
    """The dev scores of the model's metrics file, and its teacher's beside them."""
    if record is None:
        return "## Dev results\n\nNot given: the model was exported without a metrics file."
    header = ["split", "metric", "this model"] + (["teacher"] if teacher else [])
    rows = []
    for key, values in record["results"].items():
        theirs = (teacher or {}).get("results", {}).get(key, {})
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            row = [key, METRIC_NAMES.get(metric, metric), _number(value)]
            if teacher:
                row.append(_number(theirs[metric]) if metric in theirs else "-")
            rows.append(row)
    counts = record.get("num_examples") or {}
    lines = [
        "## Dev results",
        "",
        "Scores in percent on the dev split(s), from `moebert evaluate`'s metrics file"
        + (" and the teacher's" if teacher else "")
        + (
            f"; examples scored: {', '.join(f'{k} {_number(v)}' for k, v in counts.items())}"
            if counts
            else ""
        )
        + ".",
        "",
        table(header, rows),
    ]
    notes = [record.get("data_note"), (teacher or {}).get("data_note")]
    for note in dict.fromkeys(n for n in notes if n):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines)

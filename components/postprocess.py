"""postprocess: thresholds and per-class rules over ``predict``'s output, counts and a report.

Each prediction becomes a final class: ``unknown`` when its score is below the class's minimum
(``rules[class]["min_score"]``, else ``threshold``), otherwise its class, renamed where a rule
says so (``rules[class]["rename"]``; several classes may share one name). The ``report`` artifact
holds ``final.jsonl`` (per image: file, class, score, the model's class, label if known),
``report.json`` (counts per final class; with labels: accuracy before and after the rules,
coverage, a confusion matrix of true against final class) and ``report.md`` for people.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kubesage import Dataset, Input, Metrics, Output, component

RULE_KEYS = ("min_score", "rename")


@component(version="1.0.0")
def postprocess(
    predictions: Input[Dataset],
    report: Output[Dataset],
    metrics: Output[Metrics],
    threshold: float = 0.0,
    rules: dict = {},  # noqa: B006 (a default value, never mutated)
    unknown: str = "unknown",
) -> int:
    """Apply ``threshold`` and ``rules`` (``{class: {"min_score": float, "rename": str}}``) to
    the predictions; returns the number of images given a known final class. Logs counts and,
    when labels are present, ``accuracy`` (after the rules), ``accuracy_raw`` and ``coverage``.
    """
    from components.predict import PREDICTIONS_FILE, SUMMARY_FILE
    from kubesage.util.atomic import write_atomic

    summary_path = predictions.file(SUMMARY_FILE)
    if not os.path.isfile(summary_path):
        raise ValueError(f"{predictions.path} has no {SUMMARY_FILE}; pass the 'predictions' "
                         "output of predict or predict_images")
    with open(summary_path) as f:
        classes: list[str] = json.load(f)["classes"]
    check_rules(threshold, rules, classes, unknown)
    with open(predictions.file(PREDICTIONS_FILE)) as f:
        rows = [json.loads(line) for line in f if line.strip()]

    def final_name(name: str) -> str:
        return str(rules.get(name, {}).get("rename", name))

    final_rows = []
    for row in rows:
        minimum = float(rules.get(row["class"], {}).get("min_score", threshold))
        final = final_name(row["class"]) if row["score"] >= minimum else unknown
        out = {"file": row["file"], "class": final, "score": row["score"],
               "predicted": row["class"]}
        if "label" in row:
            out["label"] = final_name(row["label"])  # a renamed class is compared renamed
        final_rows.append(out)
    names = list(dict.fromkeys(final_name(c) for c in classes))
    counts = dict.fromkeys([*names, unknown], 0)
    for row in final_rows:
        counts[row["class"]] += 1
    doc: dict[str, Any] = {
        "count": len(final_rows), "threshold": threshold, "rules": rules, "unknown": unknown,
        "per_class": counts, "known": len(final_rows) - counts[unknown],
        "coverage": round((len(final_rows) - counts[unknown]) / max(1, len(final_rows)), 6),
    }
    labelled = [(r, raw) for r, raw in zip(final_rows, rows, strict=True) if "label" in r]
    if labelled:
        truths = list(dict.fromkeys([*names, *sorted({r["label"] for r, _ in labelled})]))
        columns = [*names, unknown]
        matrix = [[0] * len(columns) for _ in truths]
        for r, _ in labelled:
            matrix[truths.index(r["label"])][columns.index(r["class"])] += 1
        correct = sum(r["class"] == r["label"] for r, _ in labelled)
        known = [r for r, _ in labelled if r["class"] != unknown]
        doc.update(
            labelled=len(labelled),
            accuracy=round(correct / len(labelled), 6),
            accuracy_raw=round(sum(raw["class"] == raw["label"] for _, raw in labelled)
                               / len(labelled), 6),
            accuracy_known=round(sum(r["class"] == r["label"] for r in known) / len(known), 6)
            if known else 0.0,
            confusion={"rows": truths, "columns": columns, "matrix": matrix},
        )
    write_atomic(report.file("final.jsonl"), "".join(json.dumps(r) + "\n" for r in final_rows))
    write_atomic(report.file("report.md"), markdown(doc))
    write_atomic(report.file("report.json"), json.dumps(doc, indent=2) + "\n")  # last: complete
    report.metadata.update(count=doc["count"], known=doc["known"])
    metrics.log_metric("count", doc["count"])
    metrics.log_metric("coverage", doc["coverage"])
    for name in ("accuracy", "accuracy_raw", "accuracy_known"):
        if name in doc:
            metrics.log_metric(name, doc[name])
    shown = f", accuracy {doc['accuracy']} (raw {doc['accuracy_raw']})" if labelled else ""
    print(f"postprocess: {doc['known']} of {doc['count']} images classified, "
          f"{counts[unknown]} {unknown}{shown}", flush=True)
    return int(doc["known"])


def check_rules(threshold: float, rules: dict[str, Any], classes: list[str], unknown: str) -> None:
    """One-line errors for a threshold or rule that cannot apply to these classes."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a probability; pass 0 <= threshold <= 1")
    for name, rule in rules.items():
        if name not in classes:
            raise ValueError(f"rules name class '{name}', which the model does not know; use one "
                             f"of: {', '.join(classes)}")
        if not isinstance(rule, dict) or set(rule) - set(RULE_KEYS):
            raise ValueError(f"rule for class '{name}' is {rule!r}; a rule is a dict with "
                             f"{' and/or '.join(RULE_KEYS)}")
        score = rule.get("min_score", 0.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ValueError(f"rules['{name}']['min_score'] is {score!r}; pass a number in [0, 1]")
        if "rename" in rule and (not isinstance(rule["rename"], str) or not rule["rename"]
                                 or rule["rename"] == unknown):
            raise ValueError(f"rules['{name}']['rename'] is {rule['rename']!r}; pass a non-empty "
                             f"class name other than '{unknown}'")


def markdown(doc: dict[str, Any]) -> str:
    """The report for people: counts per final class, accuracy and the confusion matrix."""
    lines = ["# Predictions report", "",
             f"{doc['count']} images; {doc['known']} classified, "
             f"{doc['per_class'][doc['unknown']]} {doc['unknown']} (threshold {doc['threshold']}"
             f"{', per-class rules' if doc['rules'] else ''}).", ""]
    if "accuracy" in doc:
        lines += [f"Accuracy {doc['accuracy']:.4f} on {doc['labelled']} labelled images "
                  f"({doc['accuracy_raw']:.4f} before the rules; {doc['accuracy_known']:.4f} "
                  f"among those classified).", ""]
    lines += ["| class | count |", "| --- | ---: |"]
    lines += [f"| {name} | {n} |" for name, n in doc["per_class"].items()]
    if "confusion" in doc:
        c = doc["confusion"]
        lines += ["", "Confusion matrix (rows: true class, columns: final class):", "",
                  "| true \\ final | " + " | ".join(c["columns"]) + " |",
                  "| --- |" + " ---: |" * len(c["columns"])]
        lines += [f"| {name} | " + " | ".join(str(n) for n in row) + " |"
                  for name, row in zip(c["rows"], c["matrix"], strict=True)]
    return "\n".join(lines) + "\n"

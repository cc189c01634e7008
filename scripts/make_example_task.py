"""Write small generated datasets for the user-task walkthrough (README.md, config/README.md) and the tiny
user-task pipeline (config/tiny-custom.yaml): made from templates and a seeded random generator here, copied
from nowhere.

    python scripts/make_example_task.py --output data/example

writes
  reviews/{train,dev,test}.csv  classification: columns id, title, body, stars (negative, neutral,
                                positive); test.csv without stars
  ratings/{train,dev}.jsonl     regression: sentence and a score from 0 to 5 (how positive it is)
  facts/{train,dev,test}.jsonl  extractive QA: id, question, context, answers {"text", "answer_start"}

The labels follow the words (a positive word makes a positive review), so a model can learn them.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

PRODUCTS = ["kettle", "lamp", "backpack", "phone case", "blender", "desk chair", "headset", "umbrella"]
OPINIONS = {
    "negative": ["terrible", "broken", "useless", "disappointing", "awful"],
    "neutral": ["average", "ordinary", "acceptable", "plain", "so-so"],
    "positive": ["excellent", "wonderful", "sturdy", "delightful", "superb"],
}
FILLER = [
    "I bought it last month.",
    "It arrived on time.",
    "The box was a bit dented.",
    "My sister uses it too.",
    "I use it every day.",
]
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John"]
CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Nairobi", "Perth", "Lima", "Tallinn"]
THINGS = ["a bakery", "a bookshop", "a bicycle repair shop", "a tea house", "a pottery studio"]


def review(rng: random.Random, i: int, label: str) -> dict:
    product = rng.choice(PRODUCTS)
    word = rng.choice(OPINIONS[label])
    body = f"{rng.choice(FILLER)} The {product} is {word}. {rng.choice(FILLER)}"
    return {"id": f"r{i:04d}", "title": f"A {word} {product}", "body": body, "stars": label}


def rating(rng: random.Random) -> dict:
    label = rng.choice(list(OPINIONS))
    word = rng.choice(OPINIONS[label])
    score = {"negative": 0.5, "neutral": 2.5, "positive": 4.5}[label] + rng.uniform(-0.5, 0.5)
    return {"sentence": f"The {rng.choice(PRODUCTS)} was {word}.", "score": round(score, 2)}


def fact(rng: random.Random, i: int) -> dict:
    name, city, thing = rng.choice(NAMES), rng.choice(CITIES), rng.choice(THINGS)
    year = rng.randint(1950, 2020)
    context = f"{name} moved to {city} in {year}. There {name} opened {thing} near the harbour."
    asks = [
        (f"Where did {name} move?", city),
        (f"When did {name} move to {city}?", str(year)),
        (f"What did {name} open?", thing),
    ]
    question, answer = rng.choice(asks)
    start = context.index(answer)
    return {
        "id": f"q{i:04d}",
        "question": question,
        "context": context,
        "answers": {"text": [answer], "answer_start": [start]},
    }


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="data/example", help="directory to write into")
    parser.add_argument("--rows", type=int, default=96, help="train rows per task (dev and test: a third)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.output)
    sizes = {"train": args.rows, "dev": max(args.rows // 3, 6), "test": max(args.rows // 3, 6)}

    (out / "reviews").mkdir(parents=True, exist_ok=True)
    counter = 0
    for split, n in sizes.items():
        # Every label in every split (train's labels fix the classes), in a shuffled order.
        labels = [list(OPINIONS)[i % 3] for i in range(n)]
        rng.shuffle(labels)
        rows = []
        for label in labels:
            rows.append(review(rng, counter, label))
            counter += 1
        columns = ["id", "title", "body"] + (["stars"] if split != "test" else [])
        write_csv(out / "reviews" / f"{split}.csv", rows, columns)

    (out / "ratings").mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        write_jsonl(out / "ratings" / f"{split}.jsonl", [rating(rng) for _ in range(sizes[split])])

    (out / "facts").mkdir(parents=True, exist_ok=True)
    counter = 0
    for split, n in sizes.items():
        rows = []
        for _ in range(n):
            row = fact(rng, counter)
            counter += 1
            if split == "test":
                del row["answers"]
            rows.append(row)
        write_jsonl(out / "facts" / f"{split}.jsonl", rows)
    print(f"example tasks -> {out}/reviews, {out}/ratings, {out}/facts")


if __name__ == "__main__":
    main()

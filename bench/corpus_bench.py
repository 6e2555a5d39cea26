"""Benchmark: how the scorer ranks real AI-generated clips with human, author or inspection labels.

Run: python bench/corpus_bench.py [--corpus DIR] [--dump metrics.json]
     (DIR defaults to $TAKEFLOW_CORPUS, else ../shared/corpus beside the repository; about a minute)

Every clip of the corpus (see its README.md and manifest.json) is measured by `measure_take` as a
take of a shot that asks for motion (the storyboard default, motion amount 0.5) and delivers the
clip's own size and frame rate; each labelled group is then ranked by `select_best`. Printed:

- pairwise accuracy per group and overall: of the clip pairs whose labels differ, the share the
  selector orders like the label (its place in the selection's fallback order: chosen, the other
  contenders by rank score, then the takes set aside by absolute quality, failed QC last), and
  the share absolute `quality` orders like the label; ties count half;
- whether the selector's pick is a label-best clip, per comparison group;
- of the clips with a defect seen in frames that a weight-free scorer can see (`DEFECT_KINDS`),
  how many are flagged (a hard fail, a defect or a flaw of their own, or set aside by the selector
  for a defect beside their group's other takes) or ranked last in their group;
- the clips labelled good that fail hard QC, and exceptions (must be none);
- seconds per clip against a plain full-size decode of the same clip (`iter_frames`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blocks.media import iter_frames, probe  # noqa: E402
from tasks.learned import default_registry, score_with_learned, split_available  # noqa: E402
from tasks.metrics import Expectation, TakeMetrics, measure_take  # noqa: E402
from tasks.score import DEFECT_GAP, Selection, select_best  # noqa: E402

CORPUS_ENV = "TAKEFLOW_CORPUS"
MOTION_AMOUNT = 0.5  # the storyboard's default: every corpus prompt asks for something to move

# Kinds of defect seen in the corpus's frames, by the words its manifest uses. Those a scorer
# without a text model cannot see (a prompt miss) and the manifest's notes that are no defect
# (an intended transformation, repeated frames that are not frozen, real fast motion, low
# resolution on its own, a 16-frame clip) are left out of the defect count.
DEFECT_KINDS: dict[str, re.Pattern] = {
    "overlay": re.compile(r"watermark|logo"),
    "morph": re.compile(r"morph|deform|warp|change[sd]? shape|smear|reshape|flips|identity|glowing patch"),
    "still": re.compile(r"near-static|nearly static|little motion|almost no motion|small motion|barely"
                        r"|lies still|no karate movement|slow motion"),
    "soft": re.compile(r"blur|soft|hazy|low detail|texture garbage"),
    "cut": re.compile(r"scene cut|abrupt jump"),
    "black": re.compile(r"black frames|black final|black bar"),
    "flicker": re.compile(r"flicker|jitter"),
}
# What the manifest's notes call content the prompt asked for and the clip lacks. A weight-free
# scorer cannot see it; `--prompt-oracle` adds these notes as defects to show how far a perfect
# text-video alignment measure would move the bench (an upper bound read from the labels, not a score).
PROMPT_MISS = re.compile(r"prompt miss|no (dog|sign|ball|moon|butterflies|rainbow|sunset|karate)\b|no medieval man"
                         r"|not blue|no recognisable|no single|garbled|prompt missed")
NOT_A_DEFECT = re.compile(r"by design|not a frozen|not frozen|is real motion|is intended|repeated about")
GOOD_LABELS = re.compile(r"^(good|clean)")


@dataclass
class Clip:
    file: str
    group: str
    label: object
    defects: list[str]
    prompt: str
    metrics: TakeMetrics | None = None
    error: str | None = None
    seconds: float = 0.0
    decode_seconds: float = 0.0
    kinds: set[str] = field(default_factory=set)

    @property
    def good(self) -> bool:
        label = self.label
        if isinstance(label, str):
            return bool(GOOD_LABELS.match(label)) and "defect" not in label
        if isinstance(label, dict):
            return label.get("rank") == 1 or label.get("preferred") is True or label.get("mean", 0) >= 2.5
        return False


def label_value(clip: Clip) -> float | None:
    """Higher is better, comparable within the clip's group only."""
    label = clip.label
    if isinstance(label, dict):
        if "mean" in label:
            return float(label["mean"])
        if "rank" in label:
            return -float(label["rank"])
        if "preferred" in label:
            return 1.0 if label["preferred"] else 0.0
    return None


def corpus_dir(given: str | None) -> Path:
    return Path(given or os.environ.get(CORPUS_ENV) or ROOT.parent / "shared" / "corpus")


def load(corpus: Path) -> list[Clip]:
    clips = []
    for entry in json.loads((corpus / "manifest.json").read_text()):
        seen = [d for d in entry["defects_seen"] if not NOT_A_DEFECT.search(d)]
        kinds = {kind for d in seen for kind, words in DEFECT_KINDS.items() if words.search(d.lower())}
        clips.append(Clip(entry["file"], entry["group"], entry["label"], entry["defects_seen"],
                          entry.get("prompt", ""), kinds=kinds))
    return clips


def expectation_for(path: Path) -> Expectation:
    info = probe(path)
    return Expectation(width=info.width, height=info.height, fps=info.fps, duration=info.duration,
                       motion_amount=MOTION_AMOUNT)


def measure(clips: list[Clip], corpus: Path, learned: bool = False) -> None:
    """Measure every clip as the product does (`measure_take`); with `learned`, add the learned
    scorers available here (tasks/learned.py: BRISQUE where its package is installed), their
    second decode of ~8 frames included in the clip's seconds."""
    scorers = []
    if learned:
        registry, _ = default_registry()
        scorers, notices = split_available(registry.scorers())
        print("Learned scorers: " + (", ".join(s.name for s in scorers) or "none available")
              + "".join(f"; {n}" for n in notices) + "\n")
    for clip in clips:
        path = corpus / clip.file
        try:
            started = time.perf_counter()
            sum(1 for _ in iter_frames(path))
            clip.decode_seconds = time.perf_counter() - started
            expected = expectation_for(path)  # a shot's expectation comes from its storyboard: untimed
            started = time.perf_counter()
            clip.metrics = measure_take(path, expected)
            if scorers and clip.metrics.passed:
                clip.metrics.metrics.update(score_with_learned(path, clip.prompt, scorers)[0])
            clip.seconds = time.perf_counter() - started
        except Exception:  # the bench counts exceptions; the scorer must never raise
            clip.error = traceback.format_exc(limit=3)


def reuse(clips: list[Clip], dump: Path) -> None:
    """Each clip's metrics from an earlier --dump (a clip missing there counts as an exception)."""
    measured = json.loads(dump.read_text())
    fields = set(TakeMetrics.model_fields)
    for clip in clips:
        entry = measured.get(clip.file, {})
        if "passed" in entry:
            clip.metrics = TakeMetrics(**{k: v for k, v in entry.items() if k in fields})
        else:
            clip.error = entry.get("error") or "not in the dump"


def standings(clips: list[Clip], weights: dict[str, float] | None = None,
              gaps: dict[str, float] | None = None) -> tuple[Selection, list[tuple]]:
    """The selection over a group and each clip's sort key (higher = preferred): its place in the
    selection's fallback order (chosen, contenders by rank total, set-aside takes by quality)."""
    metrics = [c.metrics for c in clips]
    selection = select_best(metrics, weights, defect_gaps=DEFECT_GAP if gaps is None else gaps)
    keys = [-selection.order.index(number) for number in selection.numbers]
    return selection, keys


def pair_score(a: float, b: float, label_a: float, label_b: float) -> float:
    if a == b:
        return 0.5
    return 1.0 if (a > b) == (label_a > label_b) else 0.0


def comparison_groups(clips: list[Clip]) -> dict[str, list[Clip]]:
    groups: dict[str, list[Clip]] = {}
    for clip in clips:
        if clip.metrics is not None and clip.group != "single":
            groups.setdefault(clip.group, []).append(clip)
    return groups


def group_rows(clips: list[Clip], weights: dict[str, float] | None = None,
               gaps: dict[str, float] | None = None) -> tuple[list[str], dict]:
    rows, totals = [], {"pairs": 0, "rank": 0.0, "quality": 0.0, "groups": 0, "best": 0, "last": {},
                   "set aside": {}, "wrong": []}
    for name, members in comparison_groups(clips).items():
        selection, keys = standings(members, weights, gaps)
        labels = [label_value(c) for c in members]
        qualities = [q if q is not None else -1.0 for q in selection.quality]
        pairs = rank = qual = 0.0
        for i, j in itertools.combinations(range(len(members)), 2):
            if labels[i] is None or labels[j] is None or labels[i] == labels[j]:
                continue
            pairs += 1
            rank += (won := pair_score(keys[i], keys[j], labels[i], labels[j]))
            if won < 1:
                better, worse = (i, j) if labels[i] > labels[j] else (j, i)
                totals["wrong"].append(f"{name}: {Path(members[worse].file).stem} ({selection.standing[worse]}) "
                                       f"{'ties' if won else 'above'} {Path(members[better].file).stem} "
                                       f"({selection.standing[better]})")
            qual += pair_score(qualities[i], qualities[j], labels[i], labels[j])
        present = [v for v in labels if v is not None]
        compared = len(set(present)) > 1
        picked = selection.index
        best_ok = picked is not None and labels[picked] == max(present) if compared else None
        last = min(range(len(members)), key=lambda i: keys[i])
        for i, clip in enumerate(members):
            totals["last"][clip.file] = i == last
            totals["set aside"][clip.file] = selection.standing[i] == "set aside"
        if compared:
            totals["groups"] += 1
            totals["best"] += bool(best_ok)
        totals["pairs"] += pairs
        totals["rank"] += rank
        totals["quality"] += qual
        pick = Path(members[picked].file).stem if picked is not None else "none"
        rows.append(f"| {name} | {len(members)} | {int(pairs)} | "
                    + (f"{rank / pairs:.0%} | {qual / pairs:.0%}" if pairs else "— | —")
                    + f" | {pick} | " + ("yes" if best_ok else "no" if compared else "— (no label spread)")
                    + f" | {selection.reason[:120]} |")
    return rows, totals


RATING_AXES = ("VQ", "TC", "DD", "TVA", "FC")  # VideoFeedback's five axes (corpus README)


def axis_lines(clips: list[Clip]) -> list[str]:
    """For groups rated on several axes, pairwise accuracy against each axis on its own: the
    label is their mean, and text alignment (TVA) and factual consistency (FC) are beyond a
    weight-free scorer, so this says which part of the humans' judgement the scorer follows."""
    lines = []
    for name, members in comparison_groups(clips).items():
        if not all(isinstance(c.label, dict) and all(a in c.label for a in RATING_AXES) for c in members):
            continue
        selection, keys = standings(members)
        qualities = [q if q is not None else -1.0 for q in selection.quality]
        parts = []
        for axis in RATING_AXES:
            labels = [float(c.label[axis]) for c in members]
            pairs = [(i, j) for i, j in itertools.combinations(range(len(members)), 2) if labels[i] != labels[j]]
            if not pairs:
                parts.append(f"{axis} (all rated {labels[0]:g})")
                continue
            rank = sum(pair_score(keys[i], keys[j], labels[i], labels[j]) for i, j in pairs) / len(pairs)
            qual = sum(pair_score(qualities[i], qualities[j], labels[i], labels[j]) for i, j in pairs) / len(pairs)
            parts.append(f"{axis} {rank:.0%} / {qual:.0%} of {len(pairs)}")
        lines.append(f"- {name}, per rating axis (selector / quality): " + ", ".join(parts))
    return lines


WEIGHT_STEPS = (0.0, 0.5, 1.0, 2.0, 4.0)


def _accuracy(clips: list[Clip], weights: dict[str, float], gaps: dict[str, float]) -> tuple[float, int]:
    """(pairwise accuracy of the selector, label-best picks) over `clips`' comparison groups."""
    _, totals = group_rows(clips, weights, gaps)
    return totals["rank"] / max(1, totals["pairs"]), totals["best"]


def fit_weights(clips: list[Clip], start: dict[str, float], gaps: dict[str, float]) -> dict[str, float]:
    """Coordinate ascent over WEIGHT_STEPS per metric, three sweeps, on pairwise accuracy (then
    label-best picks); a step is taken only when it strictly helps, so ties keep the prior."""
    from tasks.metrics import METRICS
    weights = dict(start)
    best = _accuracy(clips, weights, gaps)
    tunable = sorted(name for name in weights if "INFORMATIVE" not in METRICS.get(name, ""))
    for _ in range(3):
        improved = False
        for name in tunable:
            for step in WEIGHT_STEPS:
                if step == weights[name]:
                    continue
                trial = {**weights, name: step}
                score = _accuracy(clips, trial, gaps)
                if score > best:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights


def calibrate(clips: list[Clip]) -> None:
    """Leave-one-group-out validation of fitted weights: fit on every comparison group but one,
    measure on the one left out; then the weights fitted on all groups, to compare with the
    defaults (which is what the product ships: a weight moves only if the folds agree)."""
    from tasks.score import DEFAULT_WEIGHTS
    groups = comparison_groups(clips)
    print("### Leave-one-group-out calibration of the rank weights\n")
    print("| left out | pairs | default weights | fitted on the other groups | weights changed by the fit |")
    print("|---|---|---|---|---|")
    held_default = held_fitted = pairs_total = 0.0
    for name, members in groups.items():
        rest = [c for c in clips if c.group != name and c.group in groups]
        fitted = fit_weights(rest, DEFAULT_WEIGHTS, DEFECT_GAP)
        _, base = group_rows(members, DEFAULT_WEIGHTS, DEFECT_GAP)
        _, trial = group_rows(members, fitted, DEFECT_GAP)
        if not base["pairs"]:
            continue
        pairs_total += base["pairs"]
        held_default += base["rank"]
        held_fitted += trial["rank"]
        changed = ", ".join(f"{k} {DEFAULT_WEIGHTS[k]:g}->{v:g}" for k, v in fitted.items() if v != DEFAULT_WEIGHTS[k])
        print(f"| {name} | {int(base['pairs'])} | {base['rank'] / base['pairs']:.0%} | "
              f"{trial['rank'] / trial['pairs']:.0%} | {changed or '—'} |")
    print(f"| **held out, all** | {int(pairs_total)} | **{held_default / pairs_total:.0%}** | "
          f"**{held_fitted / pairs_total:.0%}** | |\n")
    everything = fit_weights([c for c in clips if c.group in groups], DEFAULT_WEIGHTS, DEFECT_GAP)
    print("Fitted on all groups: " + (", ".join(f"{k} {DEFAULT_WEIGHTS[k]:g}->{v:g}" for k, v in everything.items()
                                               if v != DEFAULT_WEIGHTS[k]) or "no change") + "\n")


def add_prompt_oracle(clips: list[Clip]) -> None:
    """Each clip whose manifest notes a prompt miss gets it as a defect, in the manifest's words."""
    for clip in clips:
        missed = [note for note in clip.defects if PROMPT_MISS.search(note)]
        if clip.metrics is not None and missed:
            clip.metrics.defects.append("misses the prompt (oracle): " + "; ".join(missed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help=f"corpus folder (default ${CORPUS_ENV} or ../shared/corpus)")
    parser.add_argument("--dump", help="write every clip's metrics to this JSON file")
    parser.add_argument("--metrics", help="rank the metrics of an earlier --dump instead of measuring the clips "
                        "(seconds then read 0): for trying ranking rules and weights in seconds")
    parser.add_argument("--learned", action="store_true",
                        help="also run the learned scorers available here, as a production run does")
    parser.add_argument("--calibrate", action="store_true",
                        help="also fit the rank weights with leave-one-group-out validation (slow)")
    parser.add_argument("--prompt-oracle", action="store_true",
                        help="add the manifest's notes of prompt misses as defects: the bench with a perfect "
                        "text-video alignment measure, an upper bound read from the labels")
    args = parser.parse_args()
    if args.prompt_oracle and args.dump:
        parser.error("--dump records what the scorer measured: run it without --prompt-oracle")
    corpus = corpus_dir(args.corpus)
    if not (corpus / "manifest.json").is_file():
        sys.exit(f"no corpus at {corpus}: set {CORPUS_ENV} or pass --corpus")
    clips = load(corpus)
    if args.metrics:
        reuse(clips, Path(args.metrics))
    else:
        measure(clips, corpus, args.learned)
    if args.prompt_oracle:
        add_prompt_oracle(clips)

    rows, totals = group_rows(clips)
    oracle = (" (prompt-miss oracle: the manifest's notes of prompt misses count as defects)"
              if args.prompt_oracle else "")
    print(f"### Real corpus: {len(clips)} clips from {corpus}{oracle}\n")
    print("| group | clips | labelled pairs | pairwise, selector | pairwise, quality | pick | label-best? | reason |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    pairs = totals["pairs"] or 1
    print(f"| **all groups** | | **{int(totals['pairs'])}** | **{totals['rank'] / pairs:.0%}** | "
          f"**{totals['quality'] / pairs:.0%}** | | **{totals['best']} of {totals['groups']}** | |\n")

    print("\n".join(axis_lines(clips)) + "\n")
    print("Pairs the selector orders against the label:\n" + "".join(f"- {w}\n" for w in totals["wrong"]))
    defective = [c for c in clips if c.kinds and c.metrics is not None]
    flagged = [c for c in defective if c.metrics.hard_fails or c.metrics.defects or c.metrics.flaws
               or totals["last"].get(c.file) or totals["set aside"].get(c.file)]
    by_kind = {}
    for kind in DEFECT_KINDS:
        members = [c for c in defective if kind in c.kinds]
        hit = [c for c in members if c in flagged]
        by_kind[kind] = f"{len(hit)}/{len(members)}"
    print(f"Clips with a seen defect flagged (hard fail, defect or flaw; or set aside) or ranked last in their group: "
          f"**{len(flagged)} of {len(defective)}** ({len(flagged) / max(1, len(defective)):.0%}); "
          "by kind: " + ", ".join(f"{k} {v}" for k, v in by_kind.items()))
    missed = [c for c in defective if c not in flagged]
    for clip in missed:
        print(f"- missed: {Path(clip.file).name} ({', '.join(sorted(clip.kinds))})")
    good_failing = [c for c in clips if c.good and c.metrics is not None and not c.metrics.passed]
    print(f"\nGood clips failing hard QC: **{len(good_failing)}** of {sum(c.good for c in clips)}"
          + "".join(f"\n- {Path(c.file).name}: {'; '.join(c.metrics.hard_fails)}" for c in good_failing))
    errors = [c for c in clips if c.error]
    print(f"\nExceptions: **{len(errors)}**" + "".join(f"\n- {c.file}: {c.error}" for c in errors))
    timed = [c for c in clips if c.metrics is not None and c.decode_seconds]
    if timed:
        scored, decoded = sum(c.seconds for c in timed), sum(c.decode_seconds for c in timed)
        ratios = [c.seconds / c.decode_seconds for c in timed]
        print(f"\nSeconds per clip: scoring {scored / len(timed):.3f}, plain full-size decode "
              f"{decoded / len(timed):.3f} (total ratio {scored / decoded:.2f}x, median per clip "
              f"{statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x)")
    print("\nPer clip: file | passed | fails | defects | flaws")
    for clip in clips:
        if clip.metrics is not None:
            print(f"- {Path(clip.file).name} | {clip.metrics.passed} | {'; '.join(clip.metrics.hard_fails)} | "
                  f"{'; '.join(clip.metrics.defects)} | {'; '.join(clip.metrics.flaws)}")
    if args.calibrate:
        calibrate(clips)
    if args.dump:
        Path(args.dump).write_text(json.dumps(
            {c.file: {"group": c.group, "label": c.label, "kinds": sorted(c.kinds), "good": c.good,
                      **(c.metrics.model_dump() if c.metrics else {"error": c.error})} for c in clips}, indent=1))


if __name__ == "__main__":
    main()

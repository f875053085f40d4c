"""The model card a published bundle carries as its Hub repo's README.md, written from the bundle alone.

The Hub reads the YAML front matter (license, library, tags, dataset, `model-index`) to show the results beside
the model and to list it under the dataset; huggingface_hub's `ModelCard` writes it, so it follows the Hub's schema.
The text says what a stranger who finds the repo needs: what the model is, how it was trained, how well it does
per stage (calibration too), where it fails and what the analyses found in its data, and how to open it in the app.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .read import Bundle

FOOD101_HUB = "ethz/food101"  # Food-101 on the Hub: train / validation (our "test") splits, 101 classes
STAGE_WORDS = {
    "stage1": "stage 1: the pretrained backbone frozen, a new head trained",
    "stage2": "stage 2: the backbone's top blocks unfrozen (BatchNormalization kept frozen), a lower learning rate",
    "stage3": "stage 3: a short polish at a higher resolution",
}
MAX_SLICES = 5  # failure slices named in the card; the app lists them all


def model_card(b: Bundle, repo_id: str, space: str | None = None, license: str = "apache-2.0") -> ModelCard:
    """The card for bundle `b` published as `repo_id`; `space` (OWNER/NAME) is the app that serves it, if any."""
    final = b.evaluation(b.final_stage).metrics
    data = dataset_words(b)
    results = [
        EvalResult(task_type="image-classification", task_name="Image classification", dataset_type=FOOD101_HUB,
                   dataset_name=data["name"], dataset_split=data["split"], metric_type=kind, metric_name=name,
                   metric_value=round(float(final[key]), 4))
        for kind, name, key in (("accuracy", "Top-1 accuracy", "top1"), ("top_5_accuracy", "Top-5 accuracy", "top5"))
    ]  # fmt: skip
    meta = ModelCardData(
        model_name=repo_id.split("/")[-1], license=license, library_name="onnx", pipeline_tag="image-classification",
        tags=["food101-explorer", "image-classification", "onnx", "keras", b.train_config.backbone, "food"],
        datasets=[FOOD101_HUB], metrics=["accuracy"], eval_results=results,
    )  # fmt: skip
    sections = [overview(b, repo_id, data), training_words(b, data), results_table(b), failures(b), data_issues(b),
                limitations(b), how_to_open(repo_id, space)]  # fmt: skip
    return ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n")


def write_card(b: Bundle, repo_id: str, out: Path, **kwargs) -> Path:
    """The card as a README.md file (to preview before publishing, or to upload)."""
    model_card(b, repo_id, **kwargs).save(out)
    return out


def dataset_words(b: Bundle) -> dict:
    """How the bundle's data is named on the card: the whole Food-101 or a subset of it, and its test split."""
    d = b.data_source
    subset = b.num_classes < 101
    name = f"Food-101 ({b.num_classes}-class subset)" if subset else "Food-101"
    return {"name": name, "split": "validation", "subset": subset, "train": d.get("train"), "test": len(b.test_ids),
            "kind": d.get("kind", "unknown"), "excluded": len(d.get("excluded") or []),
            "relabelled": len(d.get("relabelled") or [])}  # fmt: skip


def overview(b: Bundle, repo_id: str, data: dict) -> str:
    m = b.evaluation(b.final_stage).metrics
    return (
        f"# {repo_id.split('/')[-1]}\n\n"
        f"A food classifier: **{b.train_config.backbone}** fine-tuned from ImageNet on {data['name']} "
        f"({b.num_classes} dishes), **{m['top1']:.2%} top-1** and {m['top5']:.2%} top-5 on {data['test']:,} held-out "
        f"test photos. Trained and evaluated with Food-101 Explorer, whose app "
        "shows how and why it fails.\n\n"
        "This repo is a Food-101 Explorer **run bundle**: the folder that training writes and the app reads "
        "(`bundle.json` lists every file with its checksum). The served models are ONNX files under `models/`, run "
        "with ONNX Runtime; each stage's predictions, metrics and thumbnails of its mistakes are beside them."
    )


def training_words(b: Bundle, data: dict) -> str:
    c = b.train_config
    train = f"{data['train']:,}" if data["train"] else "?"
    lines = ["## Training", "", f"- Data: {data['name']} ({data['kind']}), {train} training photos, "
             f"{data['test']:,} test photos (Food-101's held-out split, never trained on)."]  # fmt: skip
    if data["excluded"] or data["relabelled"]:
        lines.append(f"- Training labels reviewed: {data['excluded']} photos excluded, {data['relabelled']} relabelled "
                     "(listed in `config.json`).")  # fmt: skip
    mirror = "yes" if c.tta_flip else "no"
    lines.append(
        f"- Images at {c.image_size} px, batch {c.batch_size}, seed {c.seed}, label smoothing "
        f"{c.label_smoothing}, mixup {c.mixup}; test photos averaged with their mirror: {mirror}."
    )
    blocks = f"the top {c.unfreeze_blocks} blocks" if c.unfreeze_blocks else "every block"
    for stage in b.stages:
        key = "polish" if stage == "stage3" else stage
        epochs, lr = getattr(c, f"{key}_epochs"), getattr(c, f"{key}_lr")
        words = STAGE_WORDS[stage].replace("the backbone's top blocks", f"{blocks} of the backbone")
        lr_words = f"learning rate {lr:g}" if lr else "the backbone's default learning rate"
        lines.append(f"- {words[0].upper()}{words[1:]}: {epochs} epochs at {lr_words}.")
    lines.append("- Every setting is in `config.json` (`train`), with the library versions.")
    return "\n".join(lines)


def results_table(b: Bundle) -> str:
    rows = ["## Results on the test split", "",
            "| model | top-1 | top-5 | macro F1 | calibration error (ECE) before → after temperature |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for stage in b.stages:
        m = b.evaluation(stage).metrics
        raw = f"{m['ece_raw']:.3f} → " if m.get("ece_raw") is not None else ""
        final = " (served)" if stage == b.final_stage else ""
        cells = [stage + final, f"{m['top1']:.2%}", f"{m['top5']:.2%}", f"{m['macro_f1']:.3f}", f"{raw}{m['ece']:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", "ECE, the expected calibration error, is how far the model's stated confidence is from how often it "
             "is right (0 is perfect). The temperature that rescales its confidence was fitted on training photos "
             "held out for it, not on the test split."]  # fmt: skip
    return "\n".join(rows)


def failures(b: Bundle) -> str:
    """The failure slices in words: groups of test photos on which the served model is significantly worse."""
    found = b.slices(b.final_stage)
    slices = (found or {}).get("slices") or []
    if not slices:
        return ""
    lines = ["## Where it fails", "", "Groups of test photos on which the served model is significantly less accurate "
             "than on the rest (found by the app's slice finder, each checked by a statistical test):", ""]  # fmt: skip
    for s in slices[:MAX_SLICES]:
        lines.append(f"- {s['name']}: {s['accuracy']:.0%} right on {s['n']:,} photos, {s['overall']:.0%} overall")
    if len(slices) > MAX_SLICES:
        lines.append(f"- … {len(slices) - MAX_SLICES} more in the app's Slices tab")
    return "\n".join(lines)


def data_issues(b: Bundle) -> str:
    dq = b.data_quality() if b.has_data_quality else None
    if dq is None:
        return ""
    s = dq.summary
    dups = s.get("duplicates_found") or s.get("duplicates") or {}
    near, within = plural(dups.get("train-test", 0), "test photo"), plural(dups.get("test-test", 0), "pair")
    checks = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in (s.get("image_checks") or {}).items() if n)
    return "\n".join([
        "## What the analyses found in the data", "",
        f"- {s['suspects']:,} of {s['n_train']:,} training labels look wrong to a cross-validated model (cleanlab); "
        "Food-101's training labels were never cleaned, by design.",
        f"- Near-duplicates (cosine similarity ≥ {s['duplicate_threshold']}): {near} that nearly repeat a training "
        f"photo (they flatter the test score), {within} within the test split.",
        f"- Image checks on the training photos: {checks or 'nothing flagged'}.",
    ])  # fmt: skip


def limitations(b: Bundle) -> str:
    return (
        "## Limitations\n\n"
        f"- It knows {b.num_classes} dishes and answers one of them for any photo, food or not; the app warns when a "
        "photo is unlike every training photo.\n"
        "- Food-101's photos come from foodspotting.com: mostly restaurant plates, photographed by phone in the "
        "early 2010s. Home cooking, other cuisines' plating and other cameras may do worse; the app's *Your photos* "
        "tab measures that on a labelled set of your own.\n"
        "- The test photos' labels are not all right either, so the scores above are estimates."
    )


def how_to_open(repo_id: str, space: str | None) -> str:
    there = f"It is served at the Space [{space}](https://huggingface.co/spaces/{space}).\n\n" if space else ""
    return (
        "## Open it in the app\n\n"
        f"{there}Locally, with the Food-101 Explorer repository: `python app.py --run {repo_id}` (the files arrive "
        f"on first use). On a Space of the app: set the variable `FOOD101_RUN={repo_id}`."
    )


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")

"""The written report (helpers.report and `python -m helpers report`) on fake records in tmp_path (never on
results/ or the repository README): sections, figures, rendered notebooks, README blocks."""
import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from fake_records import (accuracy, fake_record, set_predictions, write_fake, write_mitigations, write_recipes,
                          write_study)

from helpers import readme as readme_blocks
from helpers import validity
from helpers import records, report, tables
from helpers.__main__ import main as cli
from helpers.config import REPO_ROOT


@pytest.fixture
def results(tmp_path):
    return write_study(tmp_path / "results")


def test_report_with_no_records(tmp_path):
    folder = tmp_path / "results"
    assert report.main(["--results", str(folder)]) == 0
    assert (folder / "summary.csv").is_file() and (folder / "figures").is_dir()
    text = (folder / "README.md").read_text()
    assert "No results yet" in text and "## Headline findings" not in text


def test_report_with_records(results):
    # an executed notebook in one run folder is rendered to HTML
    run_dir = next((results / "runs" / "02_baselines").iterdir())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# fake 02")])
    nbformat.write(nb, run_dir / "02_baselines.ipynb")
    assert cli(["report", "--results", str(results)]) == 0     # the command line runs helpers.report
    summary = pd.read_csv(results / "summary.csv")
    assert {"mean", "lo", "hi", "n", "metric", "method", "view", "noise"} <= set(summary.columns)
    figures = {p.name for p in (results / "figures").glob("*.png")}
    assert {"headline.png", "accuracy_vs_noise.png", "macro_f1_vs_noise.png", "accuracy_vs_fraction.png",
            "counterfactual_drops.png"} <= figures
    assert (results / "notebooks" / "02_baselines.html").is_file()
    text = (results / "README.md").read_text()
    for heading in ("Headline findings", "Shortcuts", "Executed notebooks", "counterfactual"):
        assert heading.lower() in text.lower()
    # the headline image result is written from the numbers
    values = [accuracy("imagenet", "linear_probe", "image", s, 0.0, 0.8) for s in range(3)]
    assert f"{np.mean(values):.3f} [" in text
    # the headline's accuracies carry the interval over seeds and test items (the fake records keep predictions)
    assert "- Test accuracies at noise=0.0, fraction=0.8: mean over seeds [95% interval over seeds and test items" in text
    audio = next(l for l in text.splitlines() if l.startswith("- **audio**"))
    t_cell = tables.format_ci(*tables.summarise(tables.results_table(records.load_records(results)).query(
        "method == 'audio_mel' and view == 'audio' and test_set == 'test' and noise == 0.0 and fraction == 0.8"),
        by=["method"]).iloc[0][["mean", "lo", "hi", "n"]])
    assert "audio_mel (supervised) " in audio and t_cell not in audio
    assert "random_forest" in text and "What the headline numbers show" in text
    assert "![counterfactual drops](figures/counterfactual_drops.png)" in text
    # effects of an axis also item by item (their interval exists with one seed too)
    line = next(l for l in text.splitlines() if l.startswith("- Accuracy change from noise 0.0 to 0.2"))
    assert "item level -0.09" in line and "over 3 seed(s) x 175 items (t over seeds and bootstrap over test items)" in line
    # the methods' targets, scored from the per-item predictions: fake audio_mel is right on 88, 89, 91 of 175
    gap = 0.88 - (88 + 89 + 91) / 525
    assert f"| 14 | audio from scratch | test | audio_mel (supervised, audio) | {(88 + 89 + 91) / 525:.3f} [" in text
    assert f"| >= 0.88 | **no**, by {gap:.3f} |" in text
    # and what the scored runs tried, read from their parameters (fake records set epochs=2; no axis, no setting)
    recipe = next(l for l in text.splitlines() if l.startswith("- 02_baselines: "))
    assert "epochs=2" in recipe and "seed=" not in recipe and "noise=" not in recipe
    # a second run rewrites the report without leftovers: the report's old figures go, others stay
    (results / "figures" / "accuracy_vs_stale.png").write_bytes(b"")
    (results / "figures" / "mine.png").write_bytes(b"")
    assert report.main(["--results", str(results), "--no-html"]) == 0
    assert not (results / "figures" / "accuracy_vs_stale.png").exists() and (results / "figures" / "mine.png").exists()
    out = json.loads(json.dumps(report.write_report(results, html=False)))
    assert out["records"] == 13 and out["rows"] == 9 * 10 + 4 * 13 and "counterfactual_drops.png" in out["figures"]
    # a fresh clone has the records but not the executed notebooks (git-ignored): the pages rendered earlier
    # stay, while a page of a notebook the study has no run of goes
    (run_dir / "02_baselines.ipynb").unlink()
    (results / "notebooks" / "99_other.html").write_text("another study")
    assert report.main(["--results", str(results)]) == 0
    assert (results / "notebooks" / "02_baselines.html").is_file()
    assert not (results / "notebooks" / "99_other.html").exists()
    assert "02_baselines.html" in (results / "README.md").read_text()


def test_mitigations_are_reported(tmp_path):
    folder = write_mitigations(tmp_path / "results", validity.MITIGATIONS)
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    assert "Mitigations on and off" in text and "each variant minus the defaults, item by item" in text
    row = next(line for line in text.splitlines() if line.startswith("| audio_mel | supervised | audio | +0.050"))
    assert "p=0.0078 (Holm 0.016)" in row     # McNemar per seed: 8-9 items one way, none the other
    # the audio variants leave the image model's items as they were: nothing to test, not in the Holm family
    assert "| image | supervised | image | same items right (nothing to test) |" in text
    assert "Holm over the 2 tests of this table" in text
    assert "target (< 2 points for every audio model) missed" in text      # the fake defaults drop is 0.1


def test_a_variant_run_with_one_seed_is_shown_but_never_counted_as_a_test(tmp_path):
    """One seed of the 16 kHz variant: its paired cells say one run each and stay out of the Holm family; the
    counterfactuals the preprocessing undoes are named as not testable."""
    folder = tmp_path / "results"
    for seed in range(3):
        record = fake_record("02_baselines", seed, audits=True)
        record["params"].update(validity.MITIGATIONS)
        write_fake(folder, set_predictions(record | {"counterfactuals_not_testable": {"audio": ["quieter_12db"]}}))
    record = fake_record("02_baselines", 0, audits=True)
    record["params"].update({**validity.MITIGATIONS, "sample_rate": 16000})
    for row in record["results"]:
        if row["view"] == "audio" and row["test_set"] == "test":
            row["accuracy"] += 0.05
    write_fake(folder, set_predictions(record))
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| audio_mel | supervised | audio | +0.046"))
    assert "p=0.0078 (one run each)" in row and "Holm" not in row
    assert "no Holm family: no cell here is a test over two or more seeds" in text
    assert "`quieter_12db` (audio) in 3 of 3 runs" in text and "not a pass" in text


def test_recipes_are_chosen_on_validation(tmp_path):
    """Mixup helps the fake audio model and hurts the image model on validation: kept for the one, not the
    other, with the test difference beside it; the recipe runs stay out of the mitigations' defaults."""
    settings = {**validity.MITIGATIONS, **validity.RECIPES}
    folder = write_recipes(write_mitigations(tmp_path / "results", settings), settings)
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    section = text[text.index("## Training recipes, chosen on validation"):].split("\n## ")[0]
    audio = next(line for line in section.splitlines() if line.startswith("| audio_mel | supervised | audio |"))
    image = next(line for line in section.splitlines() if line.startswith("| image | supervised | image |"))
    assert audio.rstrip(" |").endswith("mix=mixup") and image.rstrip(" |").endswith("defaults")
    # the paired test difference: each run's first round(accuracy * 175) items right
    acc = [accuracy("audio_mel", "supervised", "audio", s, 0.0, 0.8) for s in range(3)]
    diff = np.mean([round((a + 0.05) * 175) - round(a * 175) for a in acc]) / 175
    assert f"| audio_mel | supervised | audio | {diff:+.3f} [" in section
    mitigations = text[text.index("### Mitigations on and off"):text.index("## Training recipes")]
    assert "mix=mixup" not in mitigations


def test_the_recipes_grids_own_runs_stay_out_of_the_study(tmp_path):
    """A run at a seed that only params/recipes_02.yaml draws is in the recipes section, never in the headline's
    seeds, also when its other parameters are no longer the grid's (a study made before the grid file changed)."""
    from helpers.sweeps import load_grid
    folder = write_study(tmp_path / "results")
    _, points = load_grid(REPO_ROOT / "params" / "recipes_02.yaml", "full")
    point = next(p for p in points if p["mix"] == "none" and p["spec_augment"] is False and p["image_size"] == 64)
    record = fake_record("02_baselines", point["seed"], audits=True)   # the fake study's setting, seed 10

    def headline():
        report.write_report(folder, html=False)
        text = (folder / "README.md").read_text()
        return text[text.index("## Accuracy and macro-F1 on the test split"):text.index("## Accuracy against")]
    records.write_record(records.default_run_dir("02_baselines", point, folder), {"code_version": "fakecode", **record})
    assert "(n=3)" in headline() and "(n=4)" not in headline()
    # "What was run" still counts it, said apart
    assert "Not in the table above: 1 02_baselines run(s) of recipes_02 (seeds 10), reported in their own section" \
        in (folder / "README.md").read_text()
    summary = pd.read_csv(folder / "summary.csv")   # the study's summary leaves the recipes grid's seeds out too
    assert summary["n"].max() == 3
    # the same seed at a folder no grid lists (the grid's epochs changed since it ran) is still the recipes grid's
    records.write_record(folder / "runs" / "02_baselines" / "older", {"code_version": "fakecode", **record})
    assert "(n=3)" in headline() and "(n=4)" not in headline()
    # a seed the study's grids draw, at a folder no grid lists, is one more seed of the study
    other = fake_record("02_baselines", 3, audits=True)
    records.write_record(folder / "runs" / "02_baselines" / "elsewhere", {"code_version": "fakecode", **other})
    assert "(n=4)" in headline()


def test_finetuned_encoders_are_paired_with_training_from_scratch(tmp_path):
    """Notebook 03's fine-tuned encoders against notebook 02's from-scratch ones, item by item per seed."""
    folder = tmp_path / "results"
    for seed in range(3):
        write_fake(folder, fake_record("02_baselines", seed))
        tuned = fake_record("03_contrastive", seed)
        tuned["params"].update(finetune_epochs=40, audio_encoder="audio_mel")
        tuned["results"] += [{"method": "contrastive", "protocol": "finetune", "view": v, "test_set": "test",
                              "accuracy": a, "macro_f1": a, "n": 175} for v, a in (("audio", 0.7), ("image", 0.6))]
        write_fake(folder, set_predictions(tuned))
        write_fake(folder, fake_record("03_contrastive", seed))          # finetune_epochs absent: not compared
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    section = text[text.index("## Fine-tuned pre-trained encoders"):].split("\n## ")[0]
    audio = next(line for line in section.splitlines() if line.startswith("| contrastive | audio |"))
    # fine-tuned 0.7 against audio_mel from scratch at 0.5 + 0.01 seed, each the first round(accuracy * 175) items
    diff = np.mean([round(0.7 * 175) - round((0.5 + 0.01 * s) * 175) for s in range(3)]) / 175
    assert f"| audio_mel {accuracy('audio_mel', 'supervised', 'audio', 1, 0.0, 0.8):.3f}" in audio
    assert f"{diff:+.3f} [" in audio and "over 3 seed(s) x 175 items" in audio
    image = next(line for line in section.splitlines() if line.startswith("| contrastive | image |"))
    diff = np.mean([round(0.6 * 175) - round((0.6 + 0.01 * s) * 175) for s in range(3)]) / 175
    assert f"{diff:+.3f} [" in image and "| image 0.610" in image
    assert "Holm over the 2 comparisons" in section


def test_each_finetuned_audio_encoder_is_paired_with_its_own_architecture_from_scratch(tmp_path):
    """Two pre-trained audio encoders (audio_mel, audio_wave runs of notebook 03): each fine-tuned one against the
    same architecture trained from scratch, never against the other's."""
    folder = tmp_path / "results"
    for seed in range(2):
        scratch = fake_record("02_baselines", seed)
        scratch["results"].append({"method": "audio_wave", "protocol": "supervised", "view": "audio",
                                   "test_set": "test", "accuracy": 0.4 + 0.01 * seed, "macro_f1": 0.4, "n": 175})
        write_fake(folder, set_predictions(scratch))
        for encoder, tuned_accuracy in (("audio_mel", 0.7), ("audio_wave", 0.65)):
            tuned = fake_record("03_contrastive", seed)
            tuned["params"].update(finetune_epochs=40, audio_encoder=encoder)
            tuned["results"].append({"method": "contrastive", "protocol": "finetune", "view": "audio",
                                     "test_set": "test", "accuracy": tuned_accuracy, "macro_f1": 0.5, "n": 175})
            write_fake(folder, set_predictions(tuned))
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    section = text[text.index("## Fine-tuned pre-trained encoders"):].split("\n## ")[0]
    audio = [line for line in section.splitlines() if line.startswith("| contrastive | audio |")]
    assert len(audio) == 2
    for encoder, tuned_accuracy, base in (("audio_mel", 0.7, 0.5), ("audio_wave", 0.65, 0.4)):
        line = next(a for a in audio if f"| {encoder} " in a)
        diff = np.mean([round(tuned_accuracy * 175) - round((base + 0.01 * s) * 175) for s in range(2)]) / 175
        assert f"{diff:+.3f} [" in line and "over 2 seed(s) x 175 items" in line
    assert "Holm over the 2 comparisons" in section


def test_rendered_pages_have_stable_element_ids():
    a, b = "4f0c1a2e-1b2c-4d5e-8f90-0123456789ab", "00000000-1111-4222-8333-444444444444"
    html = f'<div id="{a}"></div><script>getElementById("{a}")</script><div id="{b}"></div>'
    assert report.stable_ids(html) == ('<div id="output-1"></div><script>getElementById("output-1")</script>'
                                       '<div id="output-2"></div>')


def test_readme_blocks_are_replaced_between_markers_only(tmp_path, results):
    bench = {"bench": {"quick": False, "started_at": "2026-11-25T18:00:00+0000", "seconds": 600.0},
             "machine": {"cpu_model": "AMD EPYC", "cores": 2, "device": "cpu", "load_avg_1m": 0.1, "load_avg_1m_end": 2.0},
             "targets": [{"what": "warm load", "target": "< 2 s", "unit": "s", "measured": 0.5, "met": True},
                         {"what": "share of peak", "target": ">= 0.5", "unit": "", "measured": 0.25, "met": False},
                         {"what": "full study", "target": "< 3600 s", "unit": "s", "measured": None, "met": None}],
             "runs": {"full_study_measured": {"available": True, "wall_s": 600.0, "compute_s": 1080.0, "unique_points": 3,
                                              "complete": False, "first_start": "2026-11-25T17:00:00",
                                              "last_end": "2026-11-25T17:10:00"}}}
    (results / "bench.json").write_text(json.dumps(bench))
    out = report.write_report(results, html=False)
    assert set(out["blocks"]) == {"results", "performance"}
    performance = "\n".join(out["blocks"]["performance"])
    assert "| share of peak | >= 0.5 | 25.0% | **no** |" in performance
    assert "| warm load | < 2 s | 0.50 s | yes |" in performance and "| full study | < 3600 s | not measured | – |" in performance
    assert "- the committed full study: 10.0 min wall (18.0 min of point time, 1.80 points at once on average, 3 points, " \
           "incomplete)" in performance
    readme = tmp_path / "README.md"
    begin, end = readme_blocks.BLOCK.format(name="results"), readme_blocks.BLOCK_END.format(name="results")
    readme.write_text(f"# Title\n\nbefore\n{begin}\nstale numbers\n{end}\nafter\n")
    assert readme_blocks.update_readme_blocks(readme, out["blocks"]) == ["results"]   # no performance markers
    text = readme.read_text()
    assert "stale numbers" not in text and text.startswith("# Title\n\nbefore\n" + begin)
    assert text.endswith(end + "\nafter\n") and "| imagenet | linear_probe |" in text
    assert "Headline findings" in text
    # the README's accuracy table is the bootstrap over seeds and items, from the records' per-item predictions:
    # fake imagenet/image at seeds 0-2, noise 0, fraction 0.8 is 0.80, 0.81, 0.82 -> 140, 142, 144 of 175 right
    assert "[95% interval over seeds and test items; (t): t interval over seeds]" in text
    assert f"| imagenet | linear_probe | – | {round((140 + 142 + 144) / 525, 3):.3f} [" in text
    # the CLI refreshes the README it is given
    readme.write_text(f"{begin}\nstale\n{end}\n")
    assert report.main(["--results", str(results), "--no-html", "--readme", str(readme)]) == 0
    assert "stale" not in readme.read_text() and "| imagenet | linear_probe |" in readme.read_text()


def test_translation_rows_get_their_own_section_not_the_headline(results):
    for seed in range(3):
        rows = [{"method": m, "protocol": "fill_missing", "view": "image->audio", "test_set": "test", "fraction": f,
                 "accuracy": acc + 0.01 * seed, "n": 175}
                for f in (0.2, 0.8) for m, acc in (("single", 0.4), ("translator", 0.3), ("both_real", 0.99))]
        rows.append({"method": "real", "protocol": "judge", "view": "audio", "test_set": "test", "fraction": 0.8,
                     "accuracy": 0.99, "n": 175})
        write_fake(results, {"notebook": "06_translation", "results": rows,
                             "params": {"fraction": 0.8, "noise": 0.0, "noise_kind": "symmetric", "seed": seed}})
    report.write_report(results, html=False)
    text = (results / "README.md").read_text()
    head = text[text.index("## Headline findings"):text.index("## Translation (notebook 06)")]
    assert "both_real" not in head and "judge" not in head and "0.99" not in head
    section = text[text.index("## Translation (notebook 06)"):]
    assert "| both_real | image->audio |" in section
    assert "[view=image->audio, fraction=0.2] translator - single = -0.100 accuracy" in section


def test_clustering_scores_get_a_section(results):
    for seed in range(2):
        write_fake(results, {"notebook": "08_visualization", "params": {"seed": seed, "fraction": 0.8},
                             "clustering": [{"method": "image", "view": "image", "nmi": 0.4 + 0.1 * seed,
                                             "ari": 0.2, "purity": 0.5, "silhouette": 0.1}]})
    report.write_report(results, html=False)
    text = (results / "README.md").read_text()
    section = text[text.index("## Feature spaces (notebook 08)"):]
    assert "| image | image | " in section and "0.450 [" in section


def test_main_settings_keep_the_most_run_setting(results):
    df = tables.results_table(records.load_records(results))
    df.loc[(df["notebook"] == "02_baselines") & (df["seed"] == 0) & (df["noise"] == 0.2), "epochs"] = 9
    kept, notes = report.main_settings(df)
    assert (kept.loc[kept["notebook"] == "02_baselines", "epochs"] == 2).all()
    assert len(notes) == 1 and "epochs=2" in notes[0] and "1 run(s) with other settings" in notes[0]


def test_external_validity_section_pairs_each_view_with_its_own_test_split(tmp_path):
    from fake_records import fake_record, write_fake
    for seed in range(3):
        write_fake(tmp_path, fake_record("02_baselines", seed, external=True))
    report.write_report(tmp_path, html=False)
    text = (tmp_path / "README.md").read_text()
    section = text[text.index("## External validity"):]
    section = section[:section.index("\n## ", 5)]
    assert "| audio_mel | supervised | audio |" in section and "-0.300 [-0.300, -0.300] (n=3)" in section
    assert "| image | supervised | image |" in section and "-0.200 [-0.200, -0.200] (n=3)" in section
    assert "fused" not in section.split("Largest drop")[0].split("|---")[1]   # external items are not paired
    assert "0.143" in section and "0.24" in section                           # chance of the external items
    assert "Largest drop by its mean (picked from 3): audio_mel (supervised, audio)" in section
    assert "a 0.50, c 0.25" in section


def test_no_external_data_is_said_not_hidden(tmp_path):
    from fake_records import fake_record, write_fake
    write_fake(tmp_path, fake_record("02_baselines", 0))
    report.write_report(tmp_path, html=False)
    assert "transfer to other recording and photo sources is not measured" in (tmp_path / "README.md").read_text()


def test_models_that_ran_out_of_budget_still_improving_are_flagged(tmp_path):
    from fake_records import fake_record, write_fake
    for seed, improving in ((0, True), (1, False)):
        r = fake_record("02_baselines", seed)
        r["history"] = {"image": {"best_epoch": 9, "steps": 90, "best_step": 90, "stopped_early": False,
                                  "still_improving": improving, "seconds": 10.0 + 20 * seed},
                        "audio_mel": {"best_epoch": 3, "steps": 72, "best_step": 36, "stopped_early": True,
                                      "still_improving": False}}
        write_fake(tmp_path, r)
    report.write_report(tmp_path, html=False)
    text = (tmp_path / "README.md").read_text()
    assert "**1 of 4 trained models ran out of budget still improving**" in text
    assert "Flagged: 02_baselines history/image at fraction 0.8 (1/2)." in text
    # and the headline findings say it beside the numbers it may understate
    assert "ran out of budget still improving (not converged by the plateau rule; the methods built on them may be " \
        "understated): 02_baselines history/image (1 of 2 runs)." in text
    c = tables.convergence_table([json.loads(p.read_text()) for p in tmp_path.rglob("metrics.json")])
    assert c.set_index("model").loc["history/audio_mel", "stopped_early"] == 2
    assert c.set_index("model").loc["history/image", "median_train_s"] == 20.0   # the median of 10 s and 30 s


def test_the_learning_rate_at_the_kept_step_follows_the_schedule_the_run_trained_with():
    """lr_at_best: a run kept early in a cosine over its budget kept a model trained at near the peak rate; a run
    whose decay ran its course kept one trained at a low rate."""
    cosine = {"params": {"epochs": 40, "fraction": 0.8}, "notebook": "02_baselines",
              "history": {"image": {"best_epoch": 3, "steps": 90, "best_step": 40, "budget_steps": 400,
                                    "train_loss": [1.0] * 9, "still_improving": False}}}
    decayed = {"params": {"epochs": 40, "decay_epochs": 5, "fraction": 0.8}, "notebook": "02_baselines",
               "history": {"image": {"best_epoch": 13, "steps": 140, "best_step": 140, "budget_steps": 400,
                                     "train_loss": [1.0] * 14, "still_improving": False}}}
    rates = [tables.convergence_table([r])["lr_at_best"].item() for r in (cosine, decayed)]
    assert 0.95 < rates[0] < 1 and rates[1] < 0.01   # step 39 of a 400-step cosine; the decay's last step


def test_headline_comparisons_are_also_made_item_by_item_and_holm_adjusted(tmp_path):
    from fake_records import fake_record, write_fake
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    for seed in range(3):
        r = fake_record("02_baselines", seed)
        fused = np.where(rng.random(40) < 0.9, y, (y + 1) % 3)
        image = np.where(rng.random(40) < 0.5, y, (y + 1) % 3)
        r["results"] += [{"method": "imagenet", "protocol": "linear_probe", "view": "image_on_pairs",
                          "test_set": "test", "accuracy": float((image == y).mean()), "macro_f1": 0.5, "n": 40}]
        for row in r["results"]:
            if row["method"] == "late_fusion" and row["test_set"] == "test":
                row["accuracy"] = row["val_accuracy"] = 0.95 + 0.01 * seed      # the best fused model
        r["predictions"] = {"late_fusion/supervised/fused/test": fused.tolist(),
                            "imagenet/linear_probe/image_on_pairs/test": image.tolist()}
        r["test_labels"] = {"pairs": y.tolist()}
        write_fake(tmp_path, r)
        write_fake(tmp_path, fake_record("03_contrastive", seed))   # two more comparisons: 3 in all
    report.write_report(tmp_path, html=False)
    text = (tmp_path / "README.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("- fusion vs the best image-only model, both on the test pairs"))
    assert "item level: +0." in line and "over 3 seed(s) x 40 items" in line
    assert "of the 3 comparisons above have a paired t-test; their Holm-adjusted p-values" in text


def test_a_tie_on_validation_is_said_never_a_winner(tmp_path):
    from fake_records import fake_record, write_fake
    for seed in range(2):
        r = fake_record("02_baselines", seed)
        for row in r["results"]:
            if row["view"] == "image" and row["test_set"] == "test":
                row["val_accuracy"] = 0.8                      # image and imagenet tie on validation
        write_fake(tmp_path, r)
    report.write_report(tmp_path, html=False)
    line = next(l for l in (tmp_path / "README.md").read_text().splitlines() if l.startswith("- **image**"))
    # broken by name, and said
    assert "is image (supervised)" in line and "tied on validation with the next one, taken by name" in line


def test_best_is_chosen_on_validation_never_on_test(tmp_path):
    from fake_records import fake_record, write_fake
    for seed in range(3):
        r = fake_record("02_baselines", seed)
        for row in r["results"]:
            if row["view"] == "image" and row["test_set"] == "test":
                # imagenet leads on test, the image CNN on validation
                row["val_accuracy"] = 0.9 if row["method"] == "image" else 0.7
        write_fake(tmp_path, r)
    report.write_report(tmp_path, html=False)
    line = next(l for l in (tmp_path / "README.md").read_text().splitlines() if l.startswith("- **image**"))
    assert "best on validation (accuracy 0.900 there) is image (supervised)" in line and "next imagenet" in line
    # compared item by item (the fake records keep predictions): the one chosen on validation is behind on test
    assert "the paired item-level difference -0.202 [" in line and "favours the next one on test" in line


def test_without_validation_scores_no_method_is_named_best(tmp_path):
    from fake_records import fake_record, write_fake
    for seed in range(2):
        r = fake_record("02_baselines", seed)
        for row in r["results"]:
            row.pop("val_accuracy", None)        # records written before rows carried a validation score
        write_fake(tmp_path, r)
    report.write_report(tmp_path, html=False)
    text = (tmp_path / "README.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("- **image**"))
    assert "no method is named best" in line and "image (supervised)" in line and "imagenet (linear_probe)" in line
    assert "fusion vs the best image-only model" not in text     # no "best" to compare with


def test_the_contrastive_temperature_is_reported_at_start_and_end(tmp_path):
    from fake_records import fake_record, write_fake
    for seed in range(2):
        r = fake_record("03_contrastive", seed)
        r["history"] = {"contrastive": {"best_epoch": 3, "steps": 40, "best_step": 30, "stopped_early": True,
                                        "still_improving": False, "logit_scale_initial": 14.29,
                                        "logit_scale": 20.0 + seed}}
        write_fake(tmp_path, r)
    report.write_report(tmp_path, html=False)
    assert "contrastive 14.29 -> 20.50 (2 runs)" in (tmp_path / "README.md").read_text()


def test_the_study_wall_time_is_read_from_the_executed_points(tmp_path, monkeypatch):
    from helpers import collect
    assert report._study_wall_time(tmp_path) == ""          # no executed notebooks: no sentence
    measured = {"available": True, "unique_points": 3, "complete": False, "wall_s": 600.0, "compute_s": 1080.0,
                "first_start": "2026-12-01T11:57:00", "last_end": "2026-12-01T12:07:00",
                "grids": {"scaling_02.yaml": {"points": 9, "found": 3}}}
    monkeypatch.setattr(collect, "measured_study", lambda results_dir, profile: measured)
    text = report._study_wall_time(tmp_path)
    assert "3 distinct points (not all of every grid's: scaling_02 3/9" in text and not text.startswith("As ")
    assert "10.0 min wall" in text and "18.0 min of point time (1.80 points running at once" in text
    assert "from the executed notebooks' papermill times" in text
    # fewer points to measure here (a fresh clone: no executed notebooks): the bench's kept measurement of more
    (tmp_path / "bench.json").write_text(json.dumps({"bench": {"started_at": "2026-12-01T21:13:26+0000"},
                                                     "runs": {"full_study_measured": {**measured, "unique_points": 9,
                                                                                      "wall_s": 1200.0}}}))
    assert report._study_wall_time(tmp_path).startswith("As results/bench.json measured it on 2026-12-01")
    assert "9 distinct points" in report._study_wall_time(tmp_path) and "20.0 min wall" in report._study_wall_time(tmp_path)
    monkeypatch.setattr(collect, "measured_study", lambda results_dir, profile: {"available": False})
    assert "20.0 min wall" in report._study_wall_time(tmp_path)
    (tmp_path / "bench.json").write_text(json.dumps({"bench": {"started_at": "2026-12-01"},
                                                     "runs": {"full_study_measured": {"available": False}}}))
    assert report._study_wall_time(tmp_path) == ""


def test_one_code_version_is_reported_the_newest_and_the_rest_is_counted(tmp_path):
    """A re-run in progress is reported alone: the older study's records (another code version, written before)
    are left out and counted, never averaged in; --all-versions keeps them."""
    folder = tmp_path / "results"
    for seed, (version, when) in enumerate([("oldcode", "2026-11-01T10:00:00"), ("oldcode", "2026-11-01T11:00:00"),
                                            ("newcode", "2026-12-01T10:00:00")]):
        write_fake(folder, fake_record("02_baselines", seed) | {"code_version": version, "written_at": when})
    out = report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    assert out["records"] == 1 and out["left_out"] == {"oldcode": 2}
    assert "Left out: 2 record(s) made by other code versions (`oldcode` 2)" in text and "`newcode`" in text
    out = report.write_report(folder, html=False, all_versions=True)
    assert out["records"] == 3 and out["left_out"] == {}
    # an analysis record (notebook 07 reads the others) re-run later on changed code chooses nothing
    records.write_record(folder / "runs" / "07_scaling" / "analysis",
                         {"notebook": "07_scaling", "params": {"seed": 0}, "code_version": "othercode",
                          "written_at": "2026-12-02T10:00:00", "analysis": {"fits": []}})
    out = report.write_report(folder, html=False)
    assert out["left_out"] == {"oldcode": 2, "othercode": 1} and "`newcode`" in (folder / "README.md").read_text()


def test_a_target_is_met_only_when_its_whole_interval_is():
    assert report.target_verdict(0.84, 0.81, 0.87, 0.8) == "yes"
    assert report.target_verdict(0.75, 0.70, 0.79, 0.8) == "**no**, by 0.050"
    spans = report.target_verdict(0.834, 0.783, 0.886, 0.8)
    assert spans.startswith("not established") and "+0.034" in spans
    assert report.target_verdict(0.981, 0.960, 0.998, 0.985).startswith("not established")


def test_reproduction_checks_are_reported(tmp_path):
    folder = write_study(tmp_path / "results")
    check = {"grid": "scaling_03.yaml", "code_version": "fakecode", "threads": 1, "checked_at": "2026-12-02T01:00:00",
             "points": [{"point": 0, "seed": 0, "status": "ran", "rows": 10, "rows_equal": 4,
                         "prediction_rows": 8, "prediction_rows_identical": 1, "max_accuracy_diff": 0.0625,
                         "cpu_models": [None, "AMD EPYC"],
                         "items_differ": {"image/supervised/image/test": 2, "image/supervised/image/greyscale": 1,
                                          "late_fusion/supervised/fused/test": 0}},
                        {"point": 3, "seed": 1, "status": "not reproducible here"}]}
    (folder / "reproduction.json").write_text(json.dumps([check]))
    report.write_report(folder, html=False)
    text = (folder / "README.md").read_text()
    section = text[text.index("## Reproduction"):].split("\n## ")[0]
    assert ("| 0 (seed 0) | fakecode | not recorded / AMD EPYC | 1 | ran | 4 of 10 | 0 / not counted | 1 of 8 "
            "| 0.062 | "
            "`image/supervised/image` |") in section
    assert "(CPU model, torch threads: records): not recorded, not recorded: 13." in text
    # the fake records' code is not this checkout's: the report says the numbers are not this code's
    assert f"The code is now `{records.code_version()}`: every number here was computed by" in text
    assert "not reproducible here | – |" in section


def test_recipe_lines_leave_out_what_the_scored_records_never_had():
    """A parameter the notebook took only later (absent from every scored record) is not listed as used."""
    rows = pd.DataFrame({"notebook": ["03_contrastive"] * 2, "run_dir": ["a", "b"], "epochs": [40, 40],
                         "mix": [None, None], "finetune_epochs": [0, 0]})
    recs = [{"run_dir": d, "params": {"epochs": 40, "finetune_epochs": 0}} for d in ("a", "b")]
    line = report._recipe_lines(rows, recs)[2]
    assert line.startswith("- 03_contrastive: ") and "epochs=40" in line and "finetune_epochs=0" in line
    assert "mix=" not in line
    assert "mix=" in report._recipe_lines(rows)[2]     # without the records: every column the rows have


def test_every_metadata_only_classifier_is_named_none_picked_by_its_test_mean():
    audit = pd.DataFrame([
        {"modality": "audio", "classifier": c, "metric": "accuracy", "mean": m, "lo": m - 0.05, "hi": m + 0.05,
         "sd": 0.02, "n": 3} for c, m in (("majority", 0.23), ("logistic", 0.50), ("random_forest", 0.70))])
    text = " ".join(report._shortcut_statements(pd.DataFrame({"test_set": []}), audit, pd.DataFrame(), {}))
    assert "logistic 0.500" in text and "random_forest 0.700" in text and "well above chance" in text
    close = audit.assign(mean=[0.23, 0.26, 0.28], lo=[0.2, 0.22, 0.24], hi=[0.26, 0.30, 0.35])
    text = " ".join(report._shortcut_statements(pd.DataFrame({"test_set": []}), close, pd.DataFrame(), {}))
    assert "possible, not established" in text      # random_forest's interval reaches 0.12 above majority
    text = " ".join(report._shortcut_statements(pd.DataFrame({"test_set": []}), close.assign(hi=close["mean"]),
                                                pd.DataFrame(), {}))
    assert "no strong metadata shortcut" in text


def test_a_recipe_is_kept_only_above_the_defaults_and_a_tie_is_said():
    keep = report.kept_on_validation
    assert keep(pd.Series({"defaults": 0.90, "mix=mixup": 0.93, "spec_augment=True": 0.91})) == "mix=mixup"
    assert keep(pd.Series({"defaults": 0.93, "mix=mixup": 0.93})) == "defaults"
    assert keep(pd.Series({"defaults": 0.90, "mix=mixup": 0.97619, "spec_augment=True": 0.97619})) == \
        "tie: mix=mixup = spec_augment=True"


def test_machines_are_compared_seed_pair_by_seed_pair():
    d = pd.DataFrame({"variant": ["defaults", "defaults", "x", "x", "y"], "seed": [0, 1, 0, 1, 0],
                      "run_dir": ["d0", "d1", "x0", "x1", "y0"]})
    cpu = {"d0": "AMD", "d1": "Intel", "x0": "AMD", "x1": "AMD", "y0": None}
    recs = [{"run_dir": k, "environment": {"cpu_model": v}} for k, v in cpu.items()]
    note = report._machines_note(d, recs)
    assert "`x` 1 of 2" in note and "`y`" not in note        # y's machine is not recorded: not counted
    cpu["x1"] = "Intel"
    assert report._machines_note(d, [{"run_dir": k, "environment": {"cpu_model": v}} for k, v in cpu.items()]) == ""


def test_the_ranking_note_says_which_way_the_t_intervals_lie():
    top = {"method": "a", "protocol": "p", "mean": 0.6, "lo": 0.55, "hi": 0.65, "n": 3}
    below = {**top, "method": "b", "mean": 0.4, "lo": 0.35, "hi": 0.45}
    above = {**top, "method": "b", "mean": 0.8, "lo": 0.75, "hi": 0.85}
    overlapping = {**top, "method": "b", "lo": 0.5}
    note = lambda second: report._ranking_note([], top, second, "image", {})   # no records: the t intervals
    assert "first's t interval lies wholly above" in note(below)
    assert "it is ahead on test" in note(above)
    assert "not established" in note(overlapping)
    assert "not established" in report._ranking_note([], {**top, "n": 1}, below, "image", {})


def test_paired_by_seed_without_spread_is_not_a_test_in_the_holm_family():
    rows = pd.DataFrame([{"method": "m", "protocol": "p", "view": "audio", "variant": "v", "measure": "accuracy",
                          "mean_diff": 0.05, "ci_lo": 0.05, "ci_hi": 0.05, "n": 3, "seeds": "0,1,2", "p_value": 0.0,
                          "cohens_dz": None, "interval": "t"},
                         {"method": "k", "protocol": "p", "view": "audio", "variant": "v", "measure": "accuracy",
                          "mean_diff": 0.02, "ci_lo": -0.01, "ci_hi": 0.05, "n": 3, "seeds": "0,1,2", "p_value": 0.04,
                          "cohens_dz": 1.5, "interval": "t"}])
    text = "\n".join(report._variant_paired_lines(rows))
    assert "Holm over the 1 tests" in text
    assert "(Holm 0)" not in text and "(Holm 0.04)" in text


def test_a_change_that_crosses_machines_in_every_seed_pair_is_not_picked_as_an_extreme(tmp_path):
    folder = write_study(tmp_path / "results")
    for path in folder.rglob("metrics.json"):   # notebook 02's noisy runs on another CPU model than its clean ones
        r = json.loads(path.read_text())
        moved = r["notebook"] == "02_baselines" and r["params"]["noise"] > 0
        r["environment"] = {"cpu_model": "Intel" if moved else "AMD"}
        path.write_text(json.dumps(r))
    report.write_report(folder, html=False)
    line = next(l for l in (folder / "README.md").read_text().splitlines()
                if l.startswith("- Accuracy change from noise 0.0 to 0.2"))
    assert "left out of the pick, every seed pair of theirs run on two CPU models" in line
    assert "most negative contrastive" in line and "least negative contrastive" in line   # 03's, on one machine

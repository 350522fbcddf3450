"""Fake metrics records with known accuracies, written to a temporary results folder (never to results/),
for the tests of helpers.tables, helpers.curves, helpers.plots, helpers.report and the grid collection."""
from helpers import records

# (method, protocol, views) of fake notebook 02 and 03 records
METHODS_02 = [("image", "supervised", ["image"]), ("audio_mel", "supervised", ["audio"]),
              ("late_fusion", "supervised", ["fused"]), ("imagenet", "linear_probe", ["image", "fused"])]
METHODS_03 = [("contrastive", "linear_probe", ["audio", "image", "fused"]),
              ("contrastive", "knn", ["audio", "image", "fused"])]
BASE = {"image": 0.6, "audio_mel": 0.5, "late_fusion": 0.7, "imagenet": 0.8, "contrastive": 0.55}
MITIGATION_OFF = {"sample_rate": 16000, "normalize_loudness": False, "random_crop": False, "augment": False}


def accuracy(method, protocol, view, seed, noise, fraction):
    """A known, seed-dependent accuracy so the tests can compute what the tables and the report must say."""
    return (BASE[method] + (0.02 if view == "fused" else 0.0) - 0.5 * noise - 0.1 * (0.8 - fraction)
            + 0.01 * seed - (0.03 if protocol == "knn" else 0.0))


def fake_record(notebook, seed, noise=0.0, fraction=0.8, epochs=2, audits=False, external=False):
    """A record of notebook 02 or 03: every method/view on the test split and on one counterfactual set
    (greyscale for the image view, bandlimit_4k for the others) that costs exactly 0.1 accuracy."""
    methods = METHODS_02 if notebook.startswith("02") else METHODS_03
    rows = []
    for method, protocol, views in methods:
        for view in views:
            acc = accuracy(method, protocol, view, seed, noise, fraction)
            rows.append({"method": method, "protocol": protocol, "view": view, "test_set": "test",
                         "accuracy": acc, "macro_f1": acc - 0.05, "n": 175, "val_accuracy": acc + 0.01})
            cf = "greyscale" if view == "image" else "bandlimit_4k"
            rows.append({"method": method, "protocol": protocol, "view": view, "test_set": cf,
                         "accuracy": acc - 0.1, "macro_f1": acc - 0.15, "n": 175})
            if external and view != "fused":   # independent sources cost 0.3 (audio) or 0.2 (image) accuracy
                rows.append({"method": method, "protocol": protocol, "view": view, "test_set": "external",
                             "accuracy": acc - (0.3 if view == "audio" else 0.2), "macro_f1": acc - 0.35, "n": 100,
                             "chance_uniform": 1 / 7, "chance_majority": 0.24})
    if notebook.startswith("03"):
        rows.append({"method": "contrastive", "protocol": "retrieval", "view": "audio->image", "test_set": "test",
                     "recall_at_1": 0.3 + 0.01 * seed, "recall_at_5": 0.6, "mAP": 0.25, "n": 175})
    params = {"fraction": fraction, "noise": noise, "noise_kind": "symmetric", "seed": seed, "epochs": epochs,
              "image_size": 64, "device": "cpu", "dataset": "animals"}
    if notebook.startswith("03"):
        params["objective"] = "infonce,supcon"
    details = {f"{r['method']}/{r['protocol']}/{r['view']}/external": {"per_class_recall": [0.5, None, 0.25]}
               for r in rows if r["test_set"] == "external"}
    record = {"notebook": notebook, "params": params, "results": rows, "details": details, "classes": ["a", "b", "c"],
              "noise_achieved": {"audio": noise, "image": noise},
              "split_sizes": {"audio": {"train": int(600 * fraction), "val": 50, "test": 175},
                              "image": {"train": int(650 * fraction), "val": 55, "test": 190}},
              "code_version": "fakecode", "environment": {}}
    set_predictions(record)
    if audits:
        record["audits"] = {m: {"all_features": {"majority": {"accuracy": 0.12, "macro_f1": 0.02},
                                                 "logistic": {"accuracy": 0.3 + 0.01 * seed, "macro_f1": 0.2},
                                                 "random_forest": {"accuracy": 0.4 + 0.01 * seed, "macro_f1": 0.3}},
                                "single_feature": [{"feature": "duration", "accuracy": 0.25, "macro_f1": 0.1,
                                                    "n_features": 1},
                                                   {"feature": "majority", "accuracy": 0.12, "macro_f1": 0.02,
                                                    "n_features": 0}]}
                            for m in ("audio", "image")}
    return record


def set_predictions(record, n=175):
    """Per-item predictions that agree with the record's accuracies, on the test split and its counterfactuals
    (the same n items): the first round(accuracy * n) items right, the rest wrong."""
    y = [i % 3 for i in range(n)]
    record["test_labels"] = {"audio": y, "image": y, "pairs": y}
    record["predictions"] = {f"{r['method']}/{r['protocol']}/{r['view']}/{r['test_set']}":
                             [c if i < round(r["accuracy"] * len(y)) else (c + 1) % 3 for i, c in enumerate(y)]
                             for r in record["results"] if r["test_set"] != "external" and "accuracy" in r}
    return record


def write_fake(results_dir, record):
    """Write `record` in its run folder; one fake study is one code version (the report shows one version)."""
    record = {"code_version": "fakecode", **record}
    run_dir = records.default_run_dir(record["notebook"], record["params"], results_dir)
    records.write_record(run_dir, record)
    return run_dir


def write_study(folder):
    """02 over seeds 0-2 x noise 0/0.2 at fraction 0.8, and at fraction 0.2 (noise 0); 03 over seeds 0-1 at
    noise 0 and 0.2. Returns the folder."""
    for seed in range(3):
        for noise in (0.0, 0.2):
            write_fake(folder, fake_record("02_baselines", seed, noise, audits=True))
        write_fake(folder, fake_record("02_baselines", seed, 0.0, fraction=0.2, audits=True))
    for seed in range(2):
        for noise in (0.0, 0.2):
            write_fake(folder, fake_record("03_contrastive", seed, noise))
    return folder


def write_mitigations(folder, mitigations):
    """Notebook 02 over seeds 0-2 with the default mitigations, sample_rate=16000 and every mitigation off;
    the audio models of both 16 kHz variants gain 0.05 on the plain test split and lose a further
    0.2 + 0.01 * seed on the counterfactual sets. Plus one run at noise 0.2 (not the headline condition).
    Returns the folder."""
    for seed in range(3):
        for variant in ({}, {"sample_rate": 16000}, MITIGATION_OFF):
            record = fake_record("02_baselines", seed, audits=True)
            record["params"].update({**mitigations, **variant})
            if variant.get("sample_rate") == 16000:
                for row in record["results"]:
                    if row["view"] == "audio":
                        row["accuracy"] += 0.05 if row["test_set"] == "test" else -0.2 - 0.01 * seed
            write_fake(folder, set_predictions(record))
    write_fake(folder, fake_record("02_baselines", 0, noise=0.2))
    return folder


def write_recipes(folder, recipes):
    """Notebook 02 with mix=mixup beside the defaults, seeds 0-2: mixup gains the audio model 0.05 and costs the
    image model 0.05, on validation and on the test split alike. Written beside write_mitigations's runs, the
    mixup runs are a fourth setting at the mitigations' defaults. Returns the folder."""
    for seed in range(3):
        record = fake_record("02_baselines", seed, audits=True)
        record["params"].update({**recipes, "mix": "mixup"})
        for row in record["results"]:
            change = {"audio": 0.05, "image": -0.05}.get(row["view"], 0.0)
            row["accuracy"] += change
            if "val_accuracy" in row:
                row["val_accuracy"] += change
        write_fake(folder, set_predictions(record))
    return folder


def write_fake_at_point(folder, notebook_stem, point):
    """A notebook-02-like record whose parameters include the grid point, in the point's run folder."""
    record = fake_record("02_baselines", point["seed"], point["noise"])
    record["params"].update(point)
    return records.write_record(records.default_run_dir(notebook_stem, point, folder), record)

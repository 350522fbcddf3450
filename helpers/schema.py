"""Every notebook parameter, defined once: its default, the values it may take, one line of doc.

The notebooks' parameters cells are generated from here (`python -m helpers params --write`), the
cores validate with `check`, the sweep runner checks grid files against it, and the README's parameter
table is `markdown_table()`. A notebook's defaults are its quick profile (minutes on a 2-core CPU, so
CI can run every notebook); the full study's values live in params/*.yaml.

Kinds, after the tuning playbook: *scientific* parameters are what the study varies and compares;
*nuisance* parameters are fixed for a comparison (or chosen on validation); *setting* parameters say
where data and results are, and change no number. Torch-free, so the sweep runner stays light.
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from pathlib import Path

from .config import StudyError

SCIENTIFIC, NUISANCE, SETTING = "scientific", "nuisance", "setting"
NOISE_KINDS = ("symmetric", "pair")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Methods whose encoders notebook 08 draws (row names of notebooks 02-04).
METHODS = ("image", "audio_wave", "audio_mel", "imagenet", "contrastive", "supcon", "mvae", "autoencoder")
# image_bound (notebook 03) has an audio encoder only: no image space of its own to draw
CONTRASTIVE_OBJECTIVES = ("contrastive", "supcon", "image_bound")
GENERATIVE_OBJECTIVES = ("mvae", "autoencoder")
AUDIO_ENCODERS = ("audio_mel", "audio_wave")   # or "timm:<name>:audio_mel"
SAMPLE_RATES = (8000, 16000, 22050)
MIXES = ("none", "mixup", "cutmix")   # batch mixing in supervised training (helpers.training.mixed_batch)
MIX_MODALITIES = ("audio", "image")   # `mix` may name one kind per modality: "image:mixup,audio:cutmix"
# An epoch is one pass over the training items or this many optimizer steps, whichever is more: at fraction 0.8
# one pass is 9-10 batches of 64, so the budget, the patience and the schedule are the same number of steps at
# every training fraction (a small set is passed over several times per epoch) and a curve over fractions
# compares amounts of data, not amounts of optimisation (helpers.training.fit).
MIN_STEPS_PER_EPOCH = 10
PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Param:
    """One parameter: default, what values are allowed, a one-line description, and its kind."""
    default: object
    doc: str
    kind: str = NUISANCE
    type: type | tuple = object          # int, float, bool, str; float also takes ints (stored as float)
    low: float | None = None             # inclusive bounds for numbers
    high: float | None = None
    high_open: bool = False              # high is excluded
    choices: tuple | None = None         # allowed values (or items, for a list)
    is_list: bool = False                # a comma-separated string (or a list) of choices
    optional: bool = False               # None is allowed

    def allowed(self) -> str:
        """The allowed values in words, for the error messages and the README."""
        if self.choices is not None:
            what = f"one or more of {list(self.choices)}, comma-separated" if self.is_list else \
                f"one of {list(self.choices)}"
        elif self.type is bool:
            what = "True or False"
        elif self.type in (int, float) and (self.low is not None or self.high is not None):
            kind = "an integer" if self.type is int else "a number"
            lo = "" if self.low is None else f"{self.low:g}"
            hi = "" if self.high is None else f"{self.high:g}"
            what = f"{kind} in [{lo}, {hi}{')' if self.high_open else ']'}" if hi else f"{kind} >= {lo}"
        elif self.type is str:
            what = "a string"
        else:
            what = "any value"
        return what + (", or None" if self.optional else "")

    def coerce(self, name: str, value):
        """The value in canonical form (floats as float, lists as comma-separated text), or StudyError."""
        def bad():
            return StudyError(f"parameter {name}={value!r} must be {self.allowed()}: {self.doc}")

        if value is None:
            if self.optional:
                return None
            raise bad()
        if self.is_list:
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            items = [str(v).strip() for v in items if str(v).strip()]
            if not items or (self.choices is not None and any(v not in self.choices for v in items)):
                raise bad()
            return ",".join(items)
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad()
        elif self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            if self.type is int and not isinstance(value, int):
                raise bad()
            value = float(value) if self.type is float else value
            if (self.low is not None and value < self.low) or (self.high is not None and (
                    value >= self.high if self.high_open else value > self.high)):
                raise bad()
        elif self.type is str and not isinstance(value, str):
            raise bad()
        if self.choices is not None and value not in self.choices:
            raise bad()
        return value


def _int(default, doc, low=None, high=None, kind=NUISANCE):
    return Param(default, doc, kind, int, low, high)


def _float(default, doc, low=None, high=None, high_open=False, kind=NUISANCE, optional=False):
    return Param(default, doc, kind, float, low, high, high_open, optional=optional)


def _bool(default, doc, kind=NUISANCE):
    return Param(default, doc, kind, bool)


def _choice(default, doc, choices, kind=NUISANCE, is_list=False):
    return Param(default, doc, kind, str, choices=tuple(choices), is_list=is_list)


def _text(default, doc, kind=SETTING):
    return Param(default, doc, kind, str)


# ------------------------------------------------------------------ every parameter, once
PARAMS: dict[str, Param] = {
    # what the study varies
    "fraction": _float(0.8, "share of ALL the data used for training (nested: 0.2 inside 0.5 inside 0.8)",
                       0.01, 0.8, kind=SCIENTIFIC),
    "noise": _float(0.0, "share of training and validation labels flipped (the test labels never are)",
                    0.0, 1.0, high_open=True, kind=SCIENTIFIC),
    "noise_kind": _choice("symmetric", "symmetric: to any other class; pair: to the class's confusable partner",
                          NOISE_KINDS, SCIENTIFIC),
    "objective": _choice("contrastive", "pre-training objective(s), each run on the same data", (), SCIENTIFIC,
                         is_list=True),   # choices are per notebook, see NOTEBOOK_CHOICES
    "methods": _choice(",".join(METHODS), "methods whose feature spaces are drawn", METHODS, SCIENTIFIC,
                       is_list=True),
    "sample_rate": Param(8000, "Hz; 8000 gives every clip the same bandwidth, so bandwidth cannot name the source",
                         SCIENTIFIC, int, choices=SAMPLE_RATES),
    "normalize_loudness": _bool(True, "scale every clip to one RMS level, so loudness cannot name the source",
                                SCIENTIFIC),
    "random_crop": _bool(True, "train on random windows of loop-padded clips (else always the first window)",
                         SCIENTIFIC),
    "augment": _bool(True, "image random resized crop, flip and colour jitter in training", SCIENTIFIC),
    "audio_augment": _bool(False, "random band limit and background noise on training clips (another recording "
                           "chain each time)", SCIENTIFIC),
    "probe_noise": _bool(True, "probes learn from the noisy training labels like everything else (False: clean "
                         "labels, rows named <protocol>_clean)",
                         SCIENTIFIC),
    "seed": _int(0, "run seed: training subset, label flips, initialisation, batches (not the test split)", 0,
                 kind=SETTING),
    # fixed for a comparison
    "epochs": _int(2, "the training (or pre-training) budget in epochs of one pass or "
                   f"{MIN_STEPS_PER_EPOCH} optimizer steps, whichever is more (the same steps at every fraction); the kept "
                   "epoch is chosen on validation", 1),
    "patience": _int(10, "validation has plateaued once its mean over `val_window` epochs has not improved for this "
                     "many epochs (0: no plateau rule, train the whole budget)", 0),
    "val_window": _int(5, "epochs whose validation scores the plateau rule averages (one epoch's score on a small "
                       "validation set moves by more than an epoch of training gains)", 1),
    "decay_epochs": _int(30, "0: the learning rate follows a cosine over the whole budget; else it stays at its "
                         "peak until validation has not improved for `patience` epochs (or the budget has this many "
                         "left), then follows a cosine to 0 over this many epochs, and training stops", 0),
    "finetune_epochs": _int(0, "epochs of supervised fine-tuning of the pre-trained encoders; 0 skips it", 0),
    "mix": Param("none", "supervised training on mixed batches: mixup (blend two items) or cutmix (paste a box of an "
                 "image, a stretch of a clip), the loss mixed alike; for every model, or per modality as "
                 "image:mixup,audio:cutmix", NUISANCE, str),
    "spec_augment": _bool(False, "SpecAugment (random frequency and time masks) on the log-mels of training clips"),
    "lr": _float(2e-3, "AdamW peak learning rate (after a linear warm-up; decay_epochs sets how it falls to 0)",
                 1e-6, 1.0, high_open=True),
    "batch_size": _int(64, "items per optimizer step", 2),
    "embed_dim": _int(128, "encoder output size", 2),
    "image_size": _int(64, "images are decoded and cached at this many pixels a side", 8, 512),
    "clip_seconds": _float(2.0, "seconds of audio the encoders see", 0.25, 4.0),
    "lowpass_hz": _int(0, "0: off; else low-pass every clip at this frequency (below sample_rate / 2)", 0),
    "audio_encoder": Param("audio_mel", "audio tower: audio_mel, audio_wave or timm:<name>:audio_mel", NUISANCE, str),
    "proj_dim": _int(64, "contrastive projection size", 2),
    "simclr": _bool(False, "add within-modality InfoNCE between two augmented views"),
    "remedy": _choice("none", "none, or small_loss: drop the largest-loss pairs of each batch after a warm-up",
                      ("none", "small_loss")),
    "drop_rate": _float(None, "share of pairs small_loss drops per batch; None: the noise rate", 0.0, 1.0,
                        high_open=True, optional=True),
    "latent_dim": _int(32, "latent size of the generative models and translators", 2),
    "beta": _float(1.0, "weight of the KL term", 0.0),
    "decoder_width": _int(16, "channels of the decoders (an MVAE step decodes 3 posteriors into 2 modalities)", 4),
    "fractions": _text("0.2,0.8", "training fractions at which fill-missing is measured, comma-separated",
                       kind=SCIENTIFIC),
    "translator_encoder": _choice("own", "own: an encoder of its own, trained with a class term; judge: the source "
                                  "judge's, frozen (a translation is then a function of the judge's output)",
                                  ("own", "judge")),
    "class_weight": _float(1.0, "weight of the translators' class term", 0.0),
    "mvae": _choice("auto", "auto: reuse a matching notebook-04 MVAE, else train one; train; off",
                    ("auto", "train", "off")),
    "griffin_lim_iters": _int(16, "Griffin-Lim iterations to turn translated mels into sound", 1),
    "reuse": _bool(True, "reuse encoders saved by notebooks 02-04 runs of the same inputs (else train here)"),
    "perplexity": _float(30.0, "t-SNE perplexity", 2.0),
    "target_accuracy": _float(0.8, "how many training items does each method need to reach this test accuracy?",
                              0.0, 1.0, high_open=True, kind=SCIENTIFIC),
    # where things are; no number depends on these
    "dataset": _text("animals", "a YAML in params/datasets/ or a path to one"),
    "external_data": _text("external", "a dataset YAML of independent recordings/photos, evaluated apart (never "
                           "trained on); empty: none"),
    "device": _choice("auto", "auto: CUDA, else Apple MPS, else the CPU", DEVICES, SETTING),
    "progress": _bool(True, "show progress bars", SETTING),
    "profile": _choice("quick", "grid profile to analyse", PROFILES, SETTING),
    "results_dir": _text("results", "where the runs' records live (relative paths: to the repository)"),
    "run_missing": _bool(True, "run the grid points that have no record yet before analysing", SETTING),
    "grids": _text("", "comma-separated grid names; empty: the notebook's grids for the profile"),
    "run_dir": _text("", "where this run's record goes; empty: results/runs/<notebook>/<parameter hash>"),
}

# The parameters each notebook takes, and where its quick profile differs from PARAMS' default.
_STUDY = ("fraction", "noise", "noise_kind", "seed", "sample_rate", "normalize_loudness", "random_crop", "augment",
          "audio_augment", "epochs", "patience", "val_window", "decay_epochs", "lr", "batch_size", "embed_dim", "image_size",
          "clip_seconds",
          "lowpass_hz", "dataset", "external_data", "device", "progress", "run_dir")
_GRID_ANALYSIS = ("profile", "results_dir", "run_missing", "grids", "run_dir")
NOTEBOOKS: dict[str, tuple[tuple[str, ...], dict]] = {
    "01_data_exploration": (("dataset", "seed", "noise", "noise_kind", "run_dir"), {"noise": 0.2}),
    "02_baselines": (_STUDY + ("spec_augment", "mix"), {"fraction": 0.2}),
    "03_contrastive": (_STUDY + ("probe_noise", "objective", "audio_encoder", "proj_dim", "simclr", "remedy", "drop_rate",
                                 "finetune_epochs", "mix"),
                       {"fraction": 0.2, "objective": "contrastive,supcon,image_bound"}),
    "04_generative": (_STUDY + ("probe_noise", "objective", "audio_encoder", "latent_dim", "beta", "decoder_width",
                                "finetune_epochs", "mix"),
                      {"fraction": 0.2, "objective": "mvae,autoencoder"}),
    "05_label_noise": (_GRID_ANALYSIS, {}),
    "06_translation": (_STUDY + ("spec_augment", "mix", "fractions", "translator_encoder", "latent_dim", "decoder_width", "class_weight",
                                 "mvae", "griffin_lim_iters"),
                       {"latent_dim": 64}),
    "07_scaling": (_GRID_ANALYSIS[:-1] + ("target_accuracy", "run_dir"), {}),
    "08_visualization": (_STUDY + ("spec_augment", "mix", "probe_noise", "methods", "reuse", "perplexity"),
                         {"methods": "image,audio_mel,audio_wave,imagenet,contrastive,mvae"}),
}
# Choices that depend on the notebook.
NOTEBOOK_CHOICES = {("03_contrastive", "objective"): CONTRASTIVE_OBJECTIVES,
                    ("04_generative", "objective"): GENERATIVE_OBJECTIVES}
# Not passed on to the cores: it says where the record goes, not what is computed.
NOT_PASSED = ("run_dir",)


def _stem(notebook) -> str:
    stem = Path(str(notebook)).stem
    if stem not in NOTEBOOKS:
        raise StudyError(f"no notebook {notebook!r}; known: {list(NOTEBOOKS)}")
    return stem


def param(notebook, name: str) -> Param:
    """The Param of `name` as `notebook` takes it (its own default and choices)."""
    stem = _stem(notebook)
    names, overrides = NOTEBOOKS[stem]
    if name not in names:
        raise StudyError(unknown_message(stem, [name]))
    p = PARAMS[name]
    changes = {}
    if name in overrides:
        changes["default"] = overrides[name]
    if (stem, name) in NOTEBOOK_CHOICES:
        changes["choices"] = NOTEBOOK_CHOICES[(stem, name)]
    return Param(**{**p.__dict__, **changes}) if changes else p


def names(notebook) -> tuple[str, ...]:
    return NOTEBOOKS[_stem(notebook)][0]


STUDY_PARAMS = _STUDY   # what every notebook that trains a model takes: data, split, inputs, budget


def defaults(notebook) -> dict:
    """The notebook's quick profile: every parameter it takes, at its stored value."""
    return {n: param(notebook, n).default for n in names(notebook)}


def unknown_message(notebook, unknown) -> str:
    known = names(notebook)
    hints = [f"{u!r} -> {m[0]!r}" for u in unknown if (m := difflib.get_close_matches(u, known, n=1))]
    return (f"unknown parameter(s) {sorted(unknown)} for notebook {_stem(notebook)}"
            + (f" (did you mean {', '.join(hints)}?)" if hints else "")
            + f"; it takes {sorted(known)} (see helpers/schema.py or the README's parameter table)")


def check(notebook, params: dict | None = None) -> dict:
    """The notebook's defaults updated with `params`, every value checked; StudyError names the first bad one."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(names(notebook)))
    if unknown:
        raise StudyError(unknown_message(notebook, unknown))
    full = defaults(notebook) | params
    out = {n: param(notebook, n).coerce(n, v) for n, v in full.items()}
    # checks across parameters
    if out.get("lowpass_hz") and not 500 <= out["lowpass_hz"] < out["sample_rate"] / 2:
        raise StudyError(f"parameter lowpass_hz={out['lowpass_hz']} must be 0 (off) or in [500, sample_rate/2) "
                         f"with sample_rate={out['sample_rate']}")
    enc = out.get("audio_encoder")
    if enc is not None and enc not in AUDIO_ENCODERS and not (enc.startswith("timm:") and enc.endswith(":audio_mel")):
        raise StudyError(f"parameter audio_encoder={enc!r} must be one of {AUDIO_ENCODERS} or "
                         "'timm:<name>:audio_mel'")
    if "fractions" in out:
        out["fractions"] = _fractions(out["fractions"])
    if "mix" in out:
        out["mix"] = _mix(out["mix"])
        if out["mix"] != "none" and out.get("finetune_epochs") == 0:   # 03 and 04 mix only what they fine-tune
            raise StudyError(f"parameter mix={out['mix']!r} mixes the batches of supervised fine-tuning, and "
                             "finetune_epochs=0 fine-tunes nothing: set finetune_epochs > 0, or mix='none'")
    return out


def mix_by_modality(value) -> dict[str, str]:
    """A `mix` value as modality -> one of MIXES: "cutmix" for both, "image:mixup,audio:cutmix" per modality (a
    modality it does not name is not mixed); StudyError for anything else."""
    value = str(value).strip()
    if value in MIXES:
        return dict.fromkeys(MIX_MODALITIES, value)
    out = dict.fromkeys(MIX_MODALITIES, "none")
    for item in value.split(","):
        modality, colon, kind = item.strip().partition(":")
        if not colon or modality not in MIX_MODALITIES or kind not in MIXES:
            raise StudyError(f"parameter mix={value!r} must be one of {list(MIXES)} for every model, or per "
                             f"modality as <modality>:<kind> comma-separated, modality in {list(MIX_MODALITIES)}, "
                             f"kind in {list(MIXES)} (e.g. 'image:mixup,audio:cutmix')")
        out[modality] = kind
    return out


def _mix(value) -> str:
    """A `mix` value in canonical form, so that one setting is one grid point: one kind when both modalities
    have it, else the modalities that are mixed, in MIX_MODALITIES order."""
    kinds = mix_by_modality(value)
    if len(set(kinds.values())) == 1:
        return next(iter(kinds.values()))
    return ",".join(f"{m}:{k}" for m, k in kinds.items() if k != "none")


def _fractions(value) -> str:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        values = sorted({float(v) for v in items if str(v).strip()})
    except ValueError:
        values = []
    if not values or any(not 0.01 <= v <= 0.8 for v in values):
        raise StudyError(f"parameter fractions={value!r} must list training fractions in [0.01, 0.8], "
                         "comma-separated, e.g. '0.2,0.5,0.8'")
    return ",".join(f"{v:g}" for v in values)


def parse_fractions(value) -> list[float]:
    """A checked `fractions` parameter as sorted floats."""
    return [float(v) for v in _fractions(value).split(",")]


def parse_list(value) -> list[str]:
    """A checked list parameter ('a,b') as a list."""
    return [v for v in str(value).split(",") if v]


# ------------------------------------------------------------------ the notebooks
def injected_names(history) -> set[str]:
    """Names assigned in the cells papermill injected (they start with '# Parameters')."""
    out = set()
    for source in history or ():
        if not isinstance(source, str) or not source.lstrip().startswith("# Parameters"):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def notebook_params(notebook, namespace: dict) -> dict:
    """A notebook's checked parameters, read from its namespace after the parameters cell.

    A name that papermill injected (`-p noize 0.1`) but the notebook does not take is an error naming the
    closest parameter: papermill itself only warns and runs the defaults. run_dir is left out (it says
    where the record goes, not what is computed).
    """
    unknown = sorted(injected_names(namespace.get("In")) - set(names(notebook)))
    if unknown:
        raise StudyError(unknown_message(notebook, unknown))
    given = {n: namespace[n] for n in names(notebook) if n in namespace}
    return {k: v for k, v in check(notebook, given).items() if k not in NOT_PASSED}


def parameters_cell(notebook) -> str:
    """The source of the notebook's cell tagged `parameters`, generated from the schema."""
    lines = ["# Generated from helpers/schema.py (`python -m helpers params --write`): the quick profile."]
    for kind in (SCIENTIFIC, NUISANCE, SETTING):
        block = [n for n in names(notebook) if PARAMS[n].kind == kind]
        if block:
            lines.append(f"# {kind}")
        for n in block:
            p = param(notebook, n)
            lines.append(f"{n} = {p.default!r}  # {p.doc}")
    return "\n".join(lines)


def markdown_table() -> str:
    """Every parameter: kind, default (per notebook where they differ), allowed values, notebooks, description."""
    rows = ["| parameter | kind | default | allowed | notebooks | what it is |", "|---|---|---|---|---|---|"]
    for name, p in PARAMS.items():
        per_nb = {s[:2]: param(s, name) for s, (ns, _) in NOTEBOOKS.items() if name in ns}
        shown = {k: repr(q.default) for k, q in per_nb.items()}
        default = (f"`{next(iter(shown.values()))}`" if len(set(shown.values())) == 1
                   else "; ".join(f"{k}: `{v}`" for k, v in shown.items()))
        allowed = "; ".join(sorted({(f"{k}: " if len({q.allowed() for q in per_nb.values()}) > 1 else "")
                                    + q.allowed() for k, q in per_nb.items()}))
        rows.append(f"| `{name}` | {p.kind} | {default} | {allowed} | {', '.join(per_nb)} | {p.doc} |")
    return "\n".join(rows)


# ------------------------------------------------------------------ command line
def write_parameters_cells(notebooks_dir) -> list[str]:
    """Rewrite the cell tagged `parameters` of every notebook from the schema; return the changed notebooks."""
    import json

    changed = []
    for stem in NOTEBOOKS:
        path = Path(notebooks_dir) / f"{stem}.ipynb"
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = next((c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])), None)
        if cell is None:
            raise StudyError(f"{path}: no cell is tagged 'parameters'")
        source = parameters_cell(stem).splitlines(keepends=True)
        if cell["source"] != source:
            cell["source"] = source
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(stem)
    return changed


README_BLOCK = ("<!-- parameters: generated by `python -m helpers params --write`; a test checks it -->",
                "<!-- /parameters -->")


def write_readme_table(readme) -> bool:
    """Put markdown_table() between the README's parameter markers; True if the file changed."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = (text.find(m) for m in README_BLOCK)
    if start < 0 or end < start:
        raise StudyError(f"{path}: no {README_BLOCK[0]} ... {README_BLOCK[1]} block for the parameter table")
    new = text[:start] + README_BLOCK[0] + "\n" + markdown_table() + "\n" + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .config import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m helpers params",
                                     description="the notebooks' parameters: defaults, allowed values, docs")
    parser.add_argument("notebook", nargs="?", help="print this notebook's parameters cell (e.g. 03_contrastive)")
    parser.add_argument("--write", action="store_true", help="rewrite every notebook's parameters cell")
    parser.add_argument("--markdown", action="store_true", help="print the table of every parameter")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_parameters_cells(REPO_ROOT / "notebooks")
        if write_readme_table(REPO_ROOT / "README.md"):
            changed.append("README.md")
        print("rewrote:", ", ".join(changed) if changed else "nothing (every cell is up to date)")
    elif args.markdown:
        print(markdown_table())
    else:
        for stem in [args.notebook] if args.notebook else NOTEBOOKS:
            print(f"## {_stem(stem)}\n{parameters_cell(stem)}\n")
    return 0

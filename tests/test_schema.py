"""The parameter schema: every shipped grid and notebook agrees with it, and bad values fail with a clear message."""
import json

import pytest

from helpers import schema
from helpers.config import PARAMS_DIR, REPO_ROOT, StudyError
from helpers.sweeps import load_grid

GRIDS = sorted(PARAMS_DIR.glob("*.yaml"))


def _profiles(grid):
    import yaml
    return list((yaml.safe_load(grid.read_text()).get("profiles") or {None: None}))


@pytest.mark.parametrize("grid, profile", [(g, p) for g in GRIDS for p in _profiles(g)],
                         ids=lambda v: getattr(v, "stem", str(v)))
def test_every_shipped_grid_loads_at_every_profile(grid, profile):
    notebook, points = load_grid(grid, profile)
    assert points, f"{grid.name} ({profile}) has no points"
    for point in points:
        # every point is the notebook's complete, checked parameter set (run_dir is the sweep's)
        assert set(point) == set(schema.names(notebook.stem)) - {"run_dir"}
        assert schema.check(notebook.stem, point) == {**point, "run_dir": ""}


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.stem)
def test_quick_profiles_vary_only_scientific_parameters(grid):
    """A notebook's stored values are exactly its quick profile: a quick grid sets no nuisance value."""
    import yaml
    spec = yaml.safe_load(grid.read_text())
    quick = {**(spec.get("params") or {}), **((spec.get("profiles") or {}).get("quick", {}).get("params") or {})}
    variant_names = {n for v in spec.get("variants") or [] for n in v}
    for name in set(quick) | variant_names:
        assert schema.PARAMS[name].kind == schema.SCIENTIFIC, f"{grid.name}: quick profile sets {name}"


@pytest.mark.parametrize("stem", list(schema.NOTEBOOKS))
def test_notebook_parameters_cell_is_generated_from_the_schema(stem):
    nb = json.loads((REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    assert "".join(cells[0]["source"]) == schema.parameters_cell(stem), \
        "run `python -m helpers params --write`"
    namespace = {}
    exec("".join(cells[0]["source"]), namespace)
    assert {k: namespace[k] for k in schema.names(stem)} == schema.defaults(stem)


def test_every_parameter_is_taken_by_a_notebook_and_documented_in_one_line():
    used = {n for names, _ in schema.NOTEBOOKS.values() for n in names}
    assert used == set(schema.PARAMS)
    for name, p in schema.PARAMS.items():
        assert p.doc and "\n" not in p.doc, name
        assert p.kind in (schema.SCIENTIFIC, schema.NUISANCE, schema.SETTING), name
    for stem in schema.NOTEBOOKS:  # every default passes its own check
        assert schema.check(stem, {}) == schema.defaults(stem) | {
            k: v for k, v in schema.check(stem, {}).items() if k == "fractions"}


@pytest.mark.parametrize("params, name", [
    ({"noise": 1.0}, "noise"), ({"noise": -0.1}, "noise"), ({"fraction": 0}, "fraction"),
    ({"fraction": 0.9}, "fraction"), ({"fraction": "half"}, "fraction"), ({"noise_kind": "asym"}, "noise_kind"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"), ({"epochs": 0}, "epochs"),
    ({"augment": 1}, "augment"), ({"sample_rate": 44100}, "sample_rate"), ({"lowpass_hz": 100}, "lowpass_hz"),
    ({"lowpass_hz": 4000}, "lowpass_hz"),   # the Nyquist frequency at 8 kHz: would change nothing
])
def test_bad_values_name_the_parameter_and_what_it_takes(params, name):
    with pytest.raises(StudyError, match=f"{name}"):
        schema.check("02_baselines", params)


def test_unknown_names_suggest_the_closest_parameter():
    with pytest.raises(StudyError, match="'noize' -> 'noise'"):
        schema.check("02_baselines", {"noize": 0.1})
    with pytest.raises(StudyError, match="unknown parameter.*latent_dim"):   # a notebook-04 name on 03
        schema.check("03_contrastive", {"latent_dim": 8})


def test_values_are_canonical():
    p = schema.check("03_contrastive", {"noise": 0, "objective": ["supcon", "contrastive"]})
    assert p["noise"] == 0.0 and isinstance(p["noise"], float)     # 0 and 0.0 are one run, not two
    assert p["objective"] == "supcon,contrastive"
    with pytest.raises(StudyError, match="objective"):
        schema.check("03_contrastive", {"objective": "mvae"})       # choices are the notebook's own
    assert schema.check("04_generative", {"objective": "mvae"})["objective"] == "mvae"
    assert schema.check("06_translation", {"fractions": "0.8, 0.2,0.2"})["fractions"] == "0.2,0.8"
    # batch mixing for every model, or per modality; one setting is one spelling (one grid point)
    for given, canonical in (("cutmix", "cutmix"), ("image:cutmix,audio:cutmix", "cutmix"), ("image:none", "none"),
                             ("image:mixup, audio:cutmix", "audio:cutmix,image:mixup"), ("image:mixup", "image:mixup")):
        assert schema.check("02_baselines", {"mix": given})["mix"] == canonical, given
    assert schema.mix_by_modality("image:mixup") == {"audio": "none", "image": "mixup"}
    for bad in ("blend", "image:blend", "video:mixup", "image"):
        with pytest.raises(StudyError, match=r"mix=.*per modality"):
            schema.check("02_baselines", {"mix": bad})
    # notebooks 03 and 04 mix the batches of their fine-tuning only: with none, mixing is a parameter unused
    assert schema.check("03_contrastive", {"mix": "cutmix", "finetune_epochs": 3})["mix"] == "cutmix"
    with pytest.raises(StudyError, match="finetune_epochs=0 fine-tunes nothing"):
        schema.check("04_generative", {"mix": "cutmix"})


def test_notebook_params_rejects_a_name_papermill_injected_but_the_notebook_lacks():
    defaults = schema.defaults("02_baselines")
    injected = "# Parameters\nnoize = 0.1\n"
    with pytest.raises(StudyError, match="'noize' -> 'noise'"):
        schema.notebook_params("02_baselines", {**defaults, "noize": 0.1, "In": ["", "x = 1", injected]})
    got = schema.notebook_params("02_baselines", {**defaults, "noise": 0.1,
                                                  "In": ["", "# Parameters\nnoise = 0.1\n"]})
    assert got["noise"] == 0.1 and "run_dir" not in got
    with pytest.raises(StudyError, match="noise"):                    # injected values are checked too
        schema.notebook_params("02_baselines", {**defaults, "noise": 2.0})


def test_markdown_table_lists_every_parameter():
    table = schema.markdown_table()
    for name in schema.PARAMS:
        assert f"| `{name}` |" in table


def test_readme_parameter_table_is_the_schema():
    readme = (REPO_ROOT / "README.md").read_text()
    assert schema.markdown_table() in readme, "paste `python -m helpers params --markdown` into the README"


def test_the_shared_study_parameters_are_taken_by_every_training_notebook():
    """Cores hand each other schema.STUDY_PARAMS (06 trains an MVAE with 04's core, 08 the models of 02-04):
    every notebook that trains a model must take all of them."""
    for stem in ("02_baselines", "03_contrastive", "04_generative", "06_translation", "08_visualization"):
        assert set(schema.STUDY_PARAMS) <= set(schema.names(stem)), stem

"""What ``dermsight train`` and ``dermsight reference build`` say about a researcher's own run
must be true of it: a resumed run is the run it continues, the data check names every problem at
once, the card's limitations and headline figures hold for the cohort trained on, a copied
config does not pass for the shipped model, and the reference set builds from the bundle's own
recorded split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.preprocess import MetaSpec  # noqa: E402
from dermsight.train.config import load_config  # noqa: E402

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "dermsight" / "assets" / "default"


def _tiny(data_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={data_dir}", "data.limit=24", "train.epochs=2", "train.batch_size=8",
            "input.size=64", "train.eval_batch_size=16", *extra]


# --- B1: --resume continues the run it resumes -------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["train.imbalance=balanced_sampler"]],
                         ids=["shuffle", "balanced_sampler"])
def test_a_run_stopped_after_epoch_1_and_resumed_is_the_uninterrupted_run(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    from dermsight.train import loop
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data

    cfg = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir, *extra))
    assert cfg.train.epochs == 2
    ds = make_datasets(cfg, prepare_data(cfg), ("train", "val"))
    per_epoch = len(ds["train"]) // cfg.train.batch_size
    assert per_epoch >= 1

    def run(out: Path, resume: bool) -> None:
        out.mkdir(exist_ok=True)
        torch.manual_seed(cfg.seed)  # as the pipeline does before it builds the network
        loop.train_model(cfg, build_net(cfg, MetaSpec()), ds["train"], ds["val"], out,
                         resume=resume, info=loop.DistInfo())

    def log(out: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]

    whole = tmp_path / "whole"
    run(whole, False)
    # the same command stopped by Ctrl-C at epoch 2's first step, then resumed
    parts = tmp_path / "parts"
    real = loop.lr_at

    def lr_at(s: int, total: int, warmup: int, base: float) -> float:
        if s == per_epoch:
            raise KeyboardInterrupt
        return real(s, total, warmup, base)

    monkeypatch.setattr(loop, "lr_at", lr_at)
    with pytest.raises(KeyboardInterrupt):
        run(parts, False)
    monkeypatch.undo()
    assert [r["epoch"] for r in log(parts)] == [1]
    # torch's global generator is somewhere else in a new process
    torch.manual_seed(12345)
    torch.rand(100)
    capsys.readouterr()
    run(parts, True)
    said = capsys.readouterr().out
    assert [r["epoch"] for r in log(parts)] == [1, 2]
    assert [r["train_loss"] for r in log(parts)] == [r["train_loss"] for r in log(whole)]
    a = torch.load(whole / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(parts / "last.pt", map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert "resuming after epoch 1 of 2 (" in said, said


def test_the_resume_line_counts_epochs_as_the_log_does(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The best epoch is named as the log numbers it (from 1); a checkpoint of an earlier
    dermsight (no random states) says that its resumed epochs draw another order."""
    from dermsight.train import loop
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data

    cfg = load_config(REPO / "configs" / "default.yaml",
                      _tiny(data_dir, "train.epochs=1"))
    ds = make_datasets(cfg, prepare_data(cfg), ("train", "val"))
    out = tmp_path / "run"
    out.mkdir()
    loop.train_model(cfg, build_net(cfg, MetaSpec()), ds["train"], ds["val"], out,
                     resume=False, info=loop.DistInfo())
    best = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert best["epoch"] == 1
    assert best["best"]
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    ck.pop("rng", None)
    torch.save(ck, out / "last.pt")
    cfg2 = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir))
    capsys.readouterr()
    loop.train_model(cfg2, build_net(cfg2, MetaSpec()), ds["train"], ds["val"], out,
                     resume=True, info=loop.DistInfo())
    said = capsys.readouterr().out
    assert "resuming after epoch 1 of 2 (best so far balanced_accuracy " in said, said
    assert f"{best['val_balanced_accuracy']:.4f} at epoch 1)" in said, said
    assert "keeps no random states" in said


# --- C4: one data check names every problem ----------------------------------------------------

def _cohort(data_dir: Path, root: Path, sample_ids: list[str], rows: list[dict[str, Any]]
            ) -> Path:
    """A data folder of real images (symlinked) and the given CSV rows after 12 good ones."""
    (root / "images").mkdir(parents=True)
    good = []
    for k, i in enumerate(sample_ids[:12]):
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
        good.append({"image_id": i, "diagnosis": ("NV", "MEL", "BKL")[k % 3], "age": 50,
                     "sex": "male", "group_id": f"g{k}"})
    import pandas as pd

    pd.DataFrame([*good, *rows]).to_csv(root / "metadata.csv", index=False)
    return root


def test_every_problem_of_the_cohort_is_named_in_one_report(
        data_dir: Path, tmp_path: Path, sample_ids: list[str]) -> None:
    from dermsight.train.config import ConfigError, DataConfig
    from dermsight.train.table import load_table

    root = _cohort(data_dir, tmp_path / "c", sample_ids, [
        {"image_id": "u1", "diagnosis": "melanoma in situ?", "group_id": "u1"},
        {"image_id": "u2", "diagnosis": "mystery", "group_id": "u2"},
        {"image_id": "gone1", "diagnosis": "NV", "group_id": "gone1"},
        {"image_id": "broken", "diagnosis": "NV", "group_id": "broken"},
    ])
    (root / "images" / "u1.jpg").symlink_to(data_dir / "images" / f"{sample_ids[20]}.jpg")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    cfg = DataConfig(root=str(root), classes=["NV", "MEL", "BKL"])
    with pytest.raises(ConfigError) as info:
        load_table(cfg)
    text = str(info.value)
    assert "3 kinds of problem" in text, text
    assert "2 rows of" in text
    assert "melanoma in situ?" in text
    assert "mystery" in text
    assert "1 images listed in" in text
    assert "gone1" in text
    assert "1 of 13 images of" in text
    assert "broken.jpg" in text


def test_ages_that_cannot_be_used_are_counted_in_a_note(
        data_dir: Path, tmp_path: Path, sample_ids: list[str]) -> None:
    from dermsight.train.config import DataConfig
    from dermsight.train.table import load_table

    rows = []
    for k, age in enumerate([150, -3, "forty", "nan", ""]):
        i = sorted(x.stem for x in (data_dir / "images").glob("*.jpg"))[100 + k]
        rows.append({"image_id": i, "diagnosis": "NV", "age": age, "group_id": f"a{k}"})
    root = _cohort(data_dir, tmp_path / "c", sample_ids, rows)
    for r in rows:
        (root / "images" / f"{r['image_id']}.jpg").symlink_to(
            data_dir / "images" / f"{r['image_id']}.jpg")
    notes: list[str] = []
    df = load_table(DataConfig(root=str(root), classes=["NV", "MEL", "BKL"]), notes)
    assert df["age"].isna().sum() == 5
    said = [n for n in notes if "ages in" in n]
    assert len(said) == 1, notes
    assert said[0].startswith("3 ages in ")
    assert "not a number from 0 to 120 years" in said[0]
    assert "(lines 14, 15, 16)" in said[0], said[0]


# --- C2: the reference set of a bundle one trained oneself --------------------------------------

def _split_card(root: Path, tmp_path: Path, group_col: str) -> tuple[Path, dict[str, Any]]:
    import pandas as pd

    from dermsight.splits import split_sha256

    md = pd.read_csv(root / "metadata.csv", dtype=str)
    split = md[["image_id", "diagnosis"]].assign(
        split=["test" if k % 4 == 0 else "val" if k % 4 == 1 else "train"
               for k in range(len(md))])
    split_csv = tmp_path / "run" / "split.csv"
    split_csv.parent.mkdir(parents=True)
    split.to_csv(split_csv, index=False)
    extra = {"data": {"split_sha256": {s: split_sha256(split.loc[split["split"] == s,
                                                                 "image_id"])
                                       for s in ("train", "val", "test")}},
             "training": {"config": {"data": {"group_col": group_col}}}}
    return split_csv, extra


def test_the_reference_split_is_read_with_the_bundles_own_data_settings(
        data_dir: Path, tmp_path: Path, sample_ids: list[str]) -> None:
    import pandas as pd

    from dermsight.reference_build import load_split

    root = _cohort(data_dir, tmp_path / "c", sample_ids, [])
    md = pd.read_csv(root / "metadata.csv", dtype=str)
    md.rename(columns={"group_id": "patient"}).to_csv(root / "metadata.csv", index=False)
    split_csv, extra = _split_card(root, tmp_path, "patient")
    df = load_split(root, split_csv, extra)  # trained with data.group_col=patient
    assert sorted(df["image_id"]) == sorted(md["image_id"])
    assert set(df["split"]) == {"train", "val", "test"}


def test_the_recorded_split_is_found_beside_the_bundle_or_asked_for(
        data_dir: Path, tmp_path: Path, sample_ids: list[str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from cli_support import run
    from dermsight.bundle import BundleError
    from dermsight.reference_build import recorded_split

    root = _cohort(data_dir, tmp_path / "c", sample_ids, [])
    split_csv, extra = _split_card(root, tmp_path, "group_id")
    bundle = split_csv.parent / "bundle"
    bundle.mkdir()
    (bundle / "card.json").write_text(json.dumps(extra))
    assert recorded_split(bundle, tmp_path / "nowhere.csv") == split_csv
    split_csv.write_text("image_id,diagnosis,split\nother,NV,train\n")  # not the card's split
    with pytest.raises(BundleError, match="the split this bundle was trained on was not found"):
        recorded_split(bundle, tmp_path / "nowhere.csv")
    # through the command, away from the repository: one clear line, not "not found:
    # configs/default-split.csv"
    own = tmp_path / "mine" / "bundle"
    shutil.copytree(SHIPPED, own)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "reference", "build", str(own), "--data", str(root))
    assert code == 3, err
    assert "Traceback" not in err
    assert "the split this bundle was trained on was not found" in err
    assert "--split" in err


# --- D3: a copied config does not pass for the shipped model ------------------------------------

def test_a_toy_run_under_the_shipped_name_and_version_is_warned_about(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_support import run
    from dermsight.train.config import shipped_identity_clash

    card = json.loads((SHIPPED / "card.json").read_text())
    default = load_config(REPO / "configs" / "default.yaml")
    assert (default.name, default.version) == (card["name"], card["version"])
    assert shipped_identity_clash(default, [REPO]) is None  # the rebuild of the shipped model
    assert shipped_identity_clash(
        load_config(REPO / "configs" / "default.yaml", ["train.num_threads=2"]), [REPO]) is None
    toy = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir))
    said = shipped_identity_clash(toy, [REPO])
    assert said is not None
    assert f"name {card['name']!r} and version {card['version']!r} are the shipped model's" \
        in said
    assert "data.limit: None in the shipped model, 24 here" in said
    assert shipped_identity_clash(load_config(REPO / "configs" / "default.yaml",
                                              [*_tiny(data_dir), "version=0.1-toy"]),
                                  [REPO]) is None
    # the command says it before it starts (here it then stops on a bad setting)
    code, _, err = run(capsys, "train", "--config", str(REPO / "configs" / "default.yaml"),
                       "--out", str(tmp_path / "run"), "--stage", "train",
                       *[a for o in _tiny(data_dir) for a in ("--set", o)],
                       "--set", "train.batch_size=10000")
    assert code == 2
    assert "warning: name 'dermsight-effnetlite0-meta-9class' and version" in err, err


# --- D1: the card's limitations hold for the cohort trained on ----------------------------------

def test_the_shipped_cards_limitations_are_what_its_data_give(data_dir: Path) -> None:
    """Regenerated for the shipped model's recorded data, the resolution and population lines
    read exactly as in the shipped card."""
    from dermsight.train.finalize.card import limitations
    from dermsight.train.table import assign_split, load_table

    isic2020 = data_dir.parent / "isic2020-sample"
    cfg = load_config(REPO / "configs" / "default.yaml", [f"data.root=[{data_dir}, {isic2020}]"])
    df = load_table(cfg.data)
    df["split"] = assign_split(df, cfg.data)
    shipped = json.loads((SHIPPED / "card.json").read_text())["limitations"]
    lim = limitations(cfg, df)
    assert lim[0] == shipped[0]
    assert lim[0].startswith("Trained and tested on low-resolution copies (150-256 px")
    population = [x for x in shipped if x.startswith("No skin-type")]
    assert [x for x in lim if x.startswith("No skin-type")] == population
    assert "fair-skinned European and US populations" in population[0]


def test_another_clinics_full_size_images_are_not_called_low_resolution_copies(
        tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    from dermsight.train.finalize.card import (
        population_limitation,
        resolution_limitation,
    )

    paths = []
    for k, size in enumerate([(1024, 768), (1600, 1200)]):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)
        paths.append(str(path))
    clinic = pd.DataFrame({"source": ["myclinic", "myclinic"], "path": paths,
                           "diagnosis": ["MEL", "NV"]})
    res = resolution_limitation(clinic)
    assert "low-resolution" not in res
    assert res.startswith("Trained and tested on images of 768-1600 px of myclinic (2 images)")
    pop = population_limitation(clinic)
    assert "fair-skinned" not in pop
    assert "the population of myclinic is not recorded: check it" in pop
    mixed = pd.concat([clinic, pd.DataFrame({"source": ["ham10000"], "path": [paths[0]],
                                             "diagnosis": ["NV"]})])
    assert ("the population of myclinic is not recorded: check it; HAM10000 are predominantly "
            "from fair-skinned") in population_limitation(mixed)
    # small copies of an unknown source: low-resolution, measured from the files
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(small)
    copies = pd.DataFrame({"source": ["myclinic"], "path": [str(small)], "diagnosis": ["NV"]})
    assert resolution_limitation(copies).startswith(
        "Trained and tested on low-resolution copies (200-300 px) of myclinic (1 image)")


# --- D2: headline figures on too few cases ------------------------------------------------------

def test_a_headline_auc_over_four_melanomas_is_withheld_and_the_shipped_card_keeps_its_own(
        ) -> None:
    import copy

    from dermsight.train.finalize.card import (
        collapsed_tiers_limitation,
        thin_figures_limitation,
        withhold_thin_figures,
    )

    ev: dict[str, Any] = {
        "metrics": {"n": 45, "n_MEL": 4, "n_malignant": 9, "mel_auc": 0.902, "mel_pauc80": 0.1,
                    "malignant_auc": 0.81, "refer_sensitivity": 0.89,
                    "refer_specificity": 0.5, "balanced_accuracy": 0.4},
        "ci": {"mel_auc": {"value": 0.902, "lo": 0.801, "hi": 0.962},
               "malignant_auc": {"value": 0.81, "lo": 0.7, "hi": 0.9}}}
    said = withhold_thin_figures(ev)
    assert ev["metrics"]["mel_auc"] is None
    assert ev["metrics"]["mel_pauc80"] is None
    assert ev["ci"]["mel_auc"]["value"] is None
    assert ev["ci"]["mel_auc"]["lo"] is None
    assert ev["metrics"]["malignant_auc"] == 0.81  # 9 malignant, 36 benign: enough
    assert ev["metrics"]["refer_sensitivity"] == 0.89
    assert said == ["mel_auc, mel_pauc80 (4 MEL of 45)"]
    line = thin_figures_limitation(said)
    assert line is not None
    assert "mel_auc, mel_pauc80 (4 MEL of 45)" in line
    # the shipped card's figures stand on hundreds of cases: nothing changes
    card = json.loads((SHIPPED / "card.json").read_text())
    test = copy.deepcopy(card["metrics"]["test"])
    assert withhold_thin_figures(test) == []
    assert test == card["metrics"]["test"]
    assert not any(x.startswith("Too few test cases") for x in card["limitations"])
    # a monitor threshold equal to the refer threshold leaves the moderate tier empty
    collapsed = collapsed_tiers_limitation(0.3, 0.3)
    assert collapsed is not None
    assert "the moderate tier is empty for this model" in collapsed
    t = card["thresholds"]
    assert collapsed_tiers_limitation(t["refer"], t["monitor"]) is None


def test_unreadable_images_of_the_test_and_training_splits_are_named_together(
        capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    from test_train_bad_inputs import _split_of, cohort, one_error, train

    metadata = pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)
    data = cohort(metadata, data_dir, tmp_path / "c")
    split = pd.read_csv(_split_of(capsys, data, tmp_path / "probe"))
    broken = []
    for where in ("train", "test"):
        image = data / "images" / f"{split.loc[split['split'] == where, 'image_id'].iloc[0]}.jpg"
        good = image.read_bytes()
        image.unlink()
        image.write_bytes(good[:1500])
        broken.append(image)
    code, _, err = train(capsys, data, tmp_path / "run")
    line = one_error(err, code)
    assert "2 of " in line
    assert all(str(b) in line for b in broken), line

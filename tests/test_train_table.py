"""Training tables from the io readers and the fixed split from ``dermsight.splits``: the split
of the shipped model is reproduced exactly (the card's sha256), other CSV layouts read as is,
and data problems are refused with one clear message. No torch needed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dermsight.records import Metadata
from dermsight.train.config import ConfigError, DataConfig, config_from_dict, load_config
from dermsight.train.table import assign_split, load_table, row_meta, split_hashes

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "src" / "dermsight" / "assets" / "default" / "card.json"


def test_the_shipped_models_split_is_reproduced(data_dir: Path) -> None:
    # configs/default.yaml reproduces the shipped model (make train); each data folder it names
    # (one for the eight-class model, two for the nine-class one) is found beside data_dir
    config = REPO / "configs" / "default.yaml"
    named = yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["root"]
    roots = [str(data_dir.parent / Path(r).name) for r in
             ([named] if isinstance(named, str) else named)]
    cfg = load_config(config, [f"data.root={json.dumps(roots)}"])
    df = load_table(cfg.data)
    df["split"] = assign_split(df, cfg.data)
    card = json.loads(CARD.read_text(encoding="utf-8"))
    assert split_hashes(df) == card["data"]["split_sha256"]
    assert len(df) == card["data"]["n_images"]
    shipped = pd.read_csv(REPO / "configs" / "default-split.csv")
    ours = df.set_index("image_id")["split"]
    assert (ours.loc[shipped["image_id"]].to_numpy() == shipped["split"].to_numpy()).all()


def _ham_folder(tmp: Path, data_dir: Path, metadata: pd.DataFrame) -> Path:
    """A HAM10000-layout CSV (dx, localization, lesion_id) over real images."""
    # HAM10000's akiec is AK or SCC by ISIC 2019: only classes HAM names the same way
    ham = metadata[(metadata["source"] == "ham10000")
                   & ~metadata["diagnosis"].isin(["AK", "SCC"])].iloc[::97].head(60)
    (tmp / "images").mkdir(parents=True)
    for i in ham["image_id"]:
        (tmp / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    pd.DataFrame({
        "lesion_id": ham["lesion_id"], "image_id": ham["image_id"],
        "dx": ham["diagnosis"].str.lower(),
        "dx_type": "histo", "age": ham["age_approx"], "sex": ham["sex"],
        "localization": ham["anatom_site"].replace("", "unknown"),
    }).to_csv(tmp / "HAM10000_metadata.csv", index=False)
    return tmp


def test_a_ham10000_layout_reads_through_the_io_reader(
        data_dir: Path, metadata: pd.DataFrame, tmp_path: Path) -> None:
    root = _ham_folder(tmp_path / "ham", data_dir, metadata)
    cfg = DataConfig(root=str(root), group_col="lesion_id")
    df = load_table(cfg)
    src = metadata.set_index("image_id").loc[df["image_id"]]
    assert len(df) > 50
    assert (df["diagnosis"].to_numpy() == src["diagnosis"].to_numpy()).all()  # nv -> NV ...
    assert set(df["source"]) == {"ham10000"}  # the layout names the source
    assert all(Path(p).exists() for p in df["path"])
    assert (df["lesion_id"].str.startswith("ham:HAM_")).all()
    assert row_meta(df.iloc[0]) == Metadata.lenient(*src.iloc[0][["age_approx", "sex",
                                                                  "anatom_site"]])


def test_a_bad_cell_costs_only_its_field(data_dir: Path, metadata: pd.DataFrame,
                                         tmp_path: Path) -> None:
    root = tmp_path / "one"
    (root / "images").mkdir(parents=True)
    rows = metadata.head(30).copy()
    for i in rows["image_id"]:
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    rows.loc[rows.index[0], "age_approx"] = "old"
    rows.to_csv(root / "metadata.csv", index=False)
    df = load_table(DataConfig(root=str(root)))
    assert len(df) == 30
    first = row_meta(df.iloc[0])
    assert first.age is None
    assert first.sex == rows["sex"].iloc[0]


def test_data_problems_are_one_clear_error(data_dir: Path, metadata: pd.DataFrame,
                                           tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no metadata\.csv"):
        load_table(DataConfig(root=str(tmp_path / "nowhere")))
    root = tmp_path / "noimages"
    root.mkdir()
    metadata.head(5).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ConfigError, match=r"5 images listed in .* have no image file"):
        load_table(DataConfig(root=str(root)))
    with pytest.raises(ConfigError, match="group column 'patient' is not in the CSV"):
        load_table(DataConfig(root=str(root), group_col="patient"))
    small = tmp_path / "small"
    (small / "images").mkdir(parents=True)
    rows = metadata.head(12)
    for i in rows["image_id"]:
        (small / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    rows.to_csv(small / "metadata.csv", index=False)
    cfg = DataConfig(root=str(small))
    with pytest.raises(ConfigError, match="cannot split data folder small: cannot make 20 folds"):
        assign_split(load_table(cfg), cfg)


def test_input_settings_outside_the_spec_vocabulary_are_refused() -> None:
    cfg = REPO / "configs" / "default.yaml"
    assert load_config(cfg, ["input.interpolation=nearest"]).input.spec().interpolation \
        == "nearest"
    with pytest.raises(ConfigError, match=r"input\.interpolation must be one of"):
        load_config(cfg, ["input.interpolation=cubic"])
    with pytest.raises(ConfigError, match=r"input\.crop must be one of"):
        load_config(cfg, ["input.crop=centre"])


def test_the_default_config_is_the_shipped_recipe() -> None:
    """configs/default.yaml (make train) holds the settings the shipped bundle was trained with
    (the v2.4 recipe of configs/v2.4.yaml): the two files may differ in comments and in
    ``version`` only (2.4.1 is a retrained draw of the 2.4.0 recipe, and a version names weights:
    clinic follow-up figures are kept per model version)."""
    card = json.loads(CARD.read_text(encoding="utf-8"))
    default = load_config(REPO / "configs" / "default.yaml").to_dict()
    recipe = load_config(REPO / "configs" / "v2.4.yaml").to_dict()
    assert (default["version"], recipe["version"]) == ("2.4.1", "2.4.0")
    assert {**default, "version": recipe["version"]} == recipe
    # the card holds the config of its day; settings added since read as their (off) defaults
    assert default == config_from_dict(card["training"]["config"]).to_dict()

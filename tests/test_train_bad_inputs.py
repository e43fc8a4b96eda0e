"""What a researcher retraining on a new cohort can get wrong, through the real commands
(``dermsight train | evaluate | data``) on a small cohort of real images: each mistake ends in
one ``error:`` line and exit code 2 (3 for a bundle, 130 for Ctrl-C) before any work is lost or
any wrong result is written: bad ``--set`` values and types, CSVs without the needed columns,
unknown diagnoses, classes the cohort lacks, a patient split across groups, unreadable images,
a run folder that already holds a run (or another run's settings or data), a Ctrl-C."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cli_support import run

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "dermsight" / "assets" / "default"
#: a tiny 4-class run of the default recipe (seconds on a CPU)
TINY = ["--config", str(REPO / "configs" / "default.yaml"),
        "--set", "data.classes=[MEL,NV,BKL,BCC]", "--set", "model.unspecified_head=false",
        "--set", "calibration.margin_classes=[]",
        "--set", "data.exclude_source_repos=[]", "--set", "train.epochs=1",
        "--set", "train.batch_size=8", "--set", "input.size=64", "--set", "evaluation.n_boot=20",
        "--set", "train.eval_batch_size=16", "--set", "train.num_threads=1"]


def cohort(metadata: pd.DataFrame, data_dir: Path, root: Path,
           edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Path:
    """A researcher's folder: metadata.csv (the shared layout) + images/ of 60 real images,
    20 NV, 15 MEL, 15 BKL, 10 BCC, one lesion each; ``edit`` changes the table first."""
    md = metadata[metadata["source_repo"] != "AmitBytesSage/Melanoma-Skin-Cancer-Detection-Model"]
    rows = pd.concat([md[md["diagnosis"] == c].sort_values("image_id").iloc[::37].head(n)
                      for c, n in (("NV", 20), ("MEL", 15), ("BKL", 15), ("BCC", 10))])
    (root / "images").mkdir(parents=True)
    for i in rows["image_id"]:
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    (edit(rows.copy()) if edit else rows).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture(scope="module")
def folder(metadata: pd.DataFrame, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Path:
    return cohort(metadata, data_dir, tmp_path_factory.mktemp("cohort") / "cohort")


def train(capsys: pytest.CaptureFixture[str], data: Path, out: Path, *extra: str
          ) -> tuple[int, str, str]:
    return run(capsys, "train", *TINY, "--set", f"data.root={data}", "--out", str(out), *extra)


def one_error(err: str, code: int, wanted: int = 2) -> str:
    """The one ``error:`` line of a refused command (exit ``wanted``, no traceback)."""
    assert code == wanted, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "message"), [
    ("train.epochs=two", "error: train.epochs must be a whole number, got 'two'"),
    ("train.epochs=1.5", "error: train.epochs must be a whole number, got 1.5"),
    ("train.lr=fast", "error: train.lr must be a number, got 'fast'"),
    ("model.pretrained=1", "error: model.pretrained must be true or false, got 1"),
    ("data.classes=MEL", "error: data.classes must be a list of texts"),
    ("data.classes=[MEL,NV", "error: override 'data.classes=[MEL,NV': the value"),
    ("data.classes=[MEL,MEL,NV]", "error: data.classes lists MEL more than once"),
    ("data.classes=[MEL]", "error: data.classes needs at least two classes"),
    ("data.limit=0", "error: data.limit must be a number of images per split >= 1"),
    ("data.holdout_sources=isic2017", "error: data.holdout_sources must be a list of texts"),
    ("data.holdout_sources=[isic2099]", "error: data.holdout_sources ['isic2099'] name no "
                                        "source of the data (sources: ham10000"),
    ("data.root=", "error: data.root must name at least one data folder"),
    ("input.size=0", "error: input.size must be at least 32 pixels, got 0"),
    ("input.mean=[0.5,0.5]", "error: input.mean and input.std need three numbers each"),
    ("seed=-1", "error: seed must be >= 0, got -1"),
    ("train.ema_decay=1.5", "error: train.ema_decay must be in [0, 1)"),
    ("train.num_threads=0", "error: train.num_threads must be >= 1, got 0"),
    ("calibration.refer_sensitivity=2", "error: calibration.refer_sensitivity must be in (0, 1]"),
    ("train.batch_size=64", "error: train.batch_size 64 is larger than the 41 training images"),
])
def test_a_bad_setting_is_one_line_before_anything_is_written(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, override: str,
        message: str) -> None:
    out = tmp_path / "run"
    code, _, err = train(capsys, folder, out, "--set", override)
    assert one_error(err, code).startswith(message), err
    assert not out.exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read config file {p}: Is a directory"),
    (b"train:\n  epochs: \xff\n", "{p} is not a text file (UTF-8): invalid start byte at byte 17"),
    (b"train:\n  epochs: 2\n bad: [\n", "{p} is not valid YAML: expected <block end>, but found "
                                        "'<block mapping start>' (line 3, column 2)"),
    (b"data:\n  root: x\ntrain:\n  epochs: twelve\n",
     "train.epochs must be a whole number, got 'twelve'"),
])
def test_a_bad_config_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       content: bytes | None, message: str) -> None:
    p = tmp_path / "cfg.yaml"
    if content is None:
        p.mkdir()
    else:
        p.write_bytes(content)
    code, _, err = run(capsys, "train", "--config", str(p), "--out", str(tmp_path / "run"))
    assert one_error(err, code) == "error: " + message.format(p=p)


def test_a_bundle_destination_that_is_no_bundle_is_refused_before_training(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    mine = tmp_path / "results.csv"
    mine.write_text("mine")
    code, _, err = train(capsys, folder, tmp_path / "run", "--bundle", str(mine))
    assert one_error(err, code) == (f"error: {mine} exists and is not a model bundle: refusing "
                                    f"to overwrite it")
    assert not (tmp_path / "run").exists()  # was: trained and finalized, then refused


def test_text_and_number_settings_read_as_meant(folder: Path) -> None:
    from dermsight.train.config import load_config

    cfg = load_config(REPO / "configs" / "default.yaml",
                      [f"data.root={folder}", "version=3.10", "train.lr=6e-4", "name=a: b"])
    assert cfg.version == "3.10"  # not the number 3.1
    assert cfg.train.lr == 0.0006  # YAML leaves 6e-4 a string
    assert cfg.name == "a: b"


# --- the cohort's table -------------------------------------------------------------------------


def _no_label_column(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={"diagnosis": "diag"})


def _unknown_labels(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df.index[:3], "diagnosis"] = "melanoma in situ?"
    return df


def _patient_over_lesions(df: pd.DataFrame) -> pd.DataFrame:
    df["patient_id"] = [f"PAT{i % 25}" for i in range(len(df))]
    return df


def _no_group_column(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["group_id"])


@pytest.mark.parametrize(("edit", "message"), [
    (_no_label_column, "has no diagnosis column (diagnosis, dx or label, or the ISIC 2019 / 2017 "
                       "class columns): its 'target' column names melanomas only"),
    (_unknown_labels, "3 rows of "),
    (_patient_over_lesions, "25 patient_id values have images in more than one group_id group "
                            "(e.g. PAT0: 3 groups), so one patient_id could land in two splits; "
                            "set data.group_col=patient_id"),
    (_no_group_column, "group column 'group_id' is not in the CSV"),
])
def test_a_table_that_cannot_train_as_asked_is_refused(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame], message: str) -> None:
    data = cohort(metadata, data_dir, tmp_path / "c", edit)
    code, _, err = train(capsys, data, tmp_path / "run")
    line = one_error(err, code)
    assert message in line
    if edit is _unknown_labels:  # they were left out silently, and the split then failed
        assert "unknown diagnosis 'melanoma in situ?'" in line
    if edit is _no_group_column:  # patient_id is empty in the shared table, lesion_id is not
        assert line.endswith("set data.group_col to the column that groups one patient's "
                             "images (here: lesion_id)")
    assert not (tmp_path / "run").exists()


def test_data_split_never_puts_one_patient_in_two_folds(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        tmp_path: Path) -> None:
    def lesions_of_patients(df: pd.DataFrame) -> pd.DataFrame:
        df = df.drop(columns=["group_id"])
        df["lesion_id"] = [f"LES{i}" for i in range(len(df))]
        df["patient_id"] = [f"PAT{i // 3}" for i in range(len(df))]
        return df

    data = cohort(metadata, data_dir, tmp_path / "c", lesions_of_patients)
    code, out, err = run(capsys, "data", "split", str(data / "metadata.csv"))
    assert "20 patient_id values have images in more than one lesion_id group" in one_error(
        err, code)
    assert out == ""
    code, out, _ = run(capsys, "data", "split", str(data / "metadata.csv"), "--group-col",
                       "patient_id")
    assert code == 0
    folds = pd.read_csv(io.StringIO(out)).merge(pd.read_csv(data / "metadata.csv"))
    assert folds.groupby("patient_id")["fold"].nunique().max() == 1


#: a data folder's empty metadata.csv, as every command that reads the folder refuses it
EMPTY_METADATA = ("metadata.csv is empty: no header row (fix it, or move it out of the folder "
                  "to use the images without metadata)")


def test_a_broken_metadata_csv_is_named_not_read_as_unlabelled_images(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        tmp_path: Path) -> None:
    data = cohort(metadata, data_dir, tmp_path / "c",
                  lambda df: df.rename(columns={"image_id": "isic"}))
    code, _, err = train(capsys, data, tmp_path / "run")
    assert "metadata.csv is missing required columns: no column names the images" in one_error(
        err, code)
    code, _, err = run(capsys, "data", "summary", str(data), "--no-progress", "--no-verify")
    assert "metadata.csv is missing required columns" in one_error(err, code)
    (data / "metadata.csv").write_text("")
    code, _, err = run(capsys, "data", "summary", str(data), "--no-progress", "--no-verify")
    assert one_error(err, code).endswith(EMPTY_METADATA)
    code, _, err = run(capsys, "evaluate", str(SHIPPED), str(data), "--out", str(tmp_path / "e"))
    assert one_error(err, code).endswith(EMPTY_METADATA)


def test_classes_the_cohort_lacks_are_refused_with_the_options_that_fit(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    """The default config's nine classes on a four-class cohort: a model naming five classes
    it never saw was trained and shipped without a word."""
    base = ["--config", str(REPO / "configs" / "default.yaml"), "--set", f"data.root={folder}",
            "--set", "train.epochs=1", "--set", "input.size=64", "--set", "train.batch_size=8",
            "--stage", "train", "--out", str(tmp_path / "run")]
    code, _, err = run(capsys, "train", *base)
    line = one_error(err, code)
    assert line.startswith("error: AK, DF, VASC, SCC, UNK have no image in the data")
    assert line.endswith("--set 'data.classes=[MEL,NV,BCC,BKL]' --set model.unspecified_head="
                         "false --set 'calibration.margin_classes=[]'")
    assert not (tmp_path / "run").exists()
    # a data.limit smoke run goes on, saying so
    from dermsight.train.config import load_config
    from dermsight.train.pipeline import prepare_data

    notes: list[str] = []
    prepare_data(load_config(REPO / "configs" / "default.yaml",
                             [f"data.root={folder}", "data.limit=40"]), notes)
    assert any(n.startswith("warning: AK, DF, VASC, SCC, UNK have no image in the data") and
               "data.limit smoke run" in n for n in notes), notes


@pytest.mark.parametrize("where", ["train", "test"])
def test_an_unreadable_image_is_named_before_training(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        tmp_path: Path, where: str) -> None:
    data = cohort(metadata, data_dir, tmp_path / "c")
    split = pd.read_csv(_split_of(capsys, data, tmp_path / "probe"))
    victim = split.loc[split["split"] == where, "image_id"].iloc[0]
    image = data / "images" / f"{victim}.jpg"
    good = image.read_bytes()
    image.unlink()
    image.write_bytes(good[:1500])
    code, _, err = train(capsys, data, tmp_path / "run")
    line = one_error(err, code)
    assert f"images cannot be read: {image}: truncated JPEG" in line
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing trained, then lost


def _split_of(capsys: pytest.CaptureFixture[str], data: Path, out: Path) -> Path:
    """The split a run of ``data`` uses (what a --stage train run with 1 epoch writes)."""
    from dermsight.train.config import load_config
    from dermsight.train.pipeline import prepare_data

    sets = [a for a in TINY[3::2] if "=" in a]
    df = prepare_data(load_config(REPO / "configs" / "default.yaml",
                                  [*sets, f"data.root={data}"]))
    out.mkdir()
    df[["image_id", "split"]].to_csv(out / "split.csv", index=False)
    capsys.readouterr()
    return out / "split.csv"


# --- the run folder -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch --stage train run of ``folder``."""
    from dermsight.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    with pytest.raises(SystemExit) as done:
        main(["train", *TINY, "--set", f"data.root={folder}", "--stage", "train",
              "--out", str(out)])
    assert done.value.code in (0, None)
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_a_folder_holding_a_run_is_not_trained_over(
        capsys: pytest.CaptureFixture[str], folder: Path, trained: Path) -> None:
    before = _snapshot(trained)
    code, _, err = train(capsys, folder, trained, "--stage", "train")
    assert one_error(err, code).startswith(
        f"error: --out {trained} already holds a training run (last.pt, best.pt, "
        f"train_log.jsonl): continue it with --resume")
    code, _, err = train(capsys, folder, trained, "--stage", "train", "--resume",
                         "--set", "train.lr=0.01")
    assert "the run in" in one_error(err, code)
    assert "train.lr: 0.0006 in the run, 0.01 now" in err
    assert _snapshot(trained) == before  # log, weights, config.json and split.csv untouched
    # the run's own settings resume it (nothing left to train: the one epoch is done)
    code, _, err = train(capsys, folder, trained, "--stage", "train", "--resume")
    assert code == 0, err
    assert len((trained / "train_log.jsonl").read_text().splitlines()) == 1


def test_resume_or_finalize_of_nothing_and_out_paths_that_cannot_be_a_folder(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    code, _, err = train(capsys, folder, empty, "--resume")
    assert one_error(err, code) == (f"error: --resume: {empty} holds no checkpoint to continue "
                                    f"(last.pt); leave out --resume to start a new run")
    code, _, err = train(capsys, folder, empty, "--stage", "finalize")
    assert one_error(err, code).startswith(f"error: {empty} holds no trained network (best.pt)")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, _, err = train(capsys, folder, a_file)
    assert one_error(err, code) == f"error: --out {a_file} is a file, not a run folder"
    code, _, err = train(capsys, folder, a_file / "run")
    assert one_error(err, code).endswith(f"{a_file} is a file")
    assert a_file.read_text() == "mine"
    assert not empty.exists()


def test_finalizing_after_the_cohort_changed_is_refused(
        capsys: pytest.CaptureFixture[str], folder: Path, metadata: pd.DataFrame,
        data_dir: Path, trained: Path, tmp_path: Path) -> None:
    """Six images added after training move others between the splits: finalize would test
    on images the network learnt from."""
    grown = tmp_path / "cohort"
    shutil.copytree(folder, grown, symlinks=True)
    md = pd.read_csv(grown / "metadata.csv", dtype=str, keep_default_na=False)
    extra = metadata[(metadata["diagnosis"] == "NV") & ~metadata["image_id"].isin(
        md["image_id"])].iloc[::101].head(6)
    for i in extra["image_id"]:
        (grown / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    pd.concat([md, extra]).to_csv(grown / "metadata.csv", index=False)
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    code, _, err = train(capsys, grown, run_dir, "--stage", "finalize")
    line = one_error(err, code)
    assert line.startswith(f"error: the data differ from the split this run was trained on "
                           f"({run_dir / 'split.csv'}): 6 images new, 0 gone, ")
    assert not (run_dir / "bundle").exists()


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Ctrl-C (KeyboardInterrupt, as Python delivers SIGINT) at training step ``step``."""
    from dermsight.train import loop

    real = loop.lr_at

    def lr_at(s: int, total: int, warmup: int, base: float) -> float:
        if s == step:
            raise KeyboardInterrupt
        return real(s, total, warmup, base)

    monkeypatch.setattr(loop, "lr_at", lr_at)


def test_ctrl_c_keeps_the_finished_epochs_and_says_how_to_go_on(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 5)  # 41 training images, batches of 8: epoch 2's first step
    code, _, err = train(capsys, folder, out, "--stage", "train", "--set", "train.epochs=2")
    assert code == 130, err
    assert err.strip().splitlines()[-1] == (f"interrupted: {out / 'last.pt'} keeps epoch 1 of "
                                            f"2: continue with the same command and --resume")
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 0
    monkeypatch.undo()
    code, _, err = train(capsys, folder, out, "--stage", "train", "--set", "train.epochs=2",
                         "--resume")
    assert code == 0, err
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


def test_ctrl_c_while_a_checkpoint_is_written_keeps_the_previous_one(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torch.save
    saves: list[str] = []

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(Path(f).name)
        if saves.count("last.pt") == 2:  # epoch 2's checkpoint, half written
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    code, _, err = train(capsys, folder, out, "--stage", "train", "--set", "train.epochs=2")
    assert code == 130, err
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 0  # epoch 1's, whole
    assert "keeps epoch 1 of 2" in err


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_refuses_a_run_folder_and_a_folder_of_another_evaluation(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        tmp_path: Path) -> None:
    def small(name: str, labelled: int) -> Path:
        def edit(df: pd.DataFrame) -> pd.DataFrame:
            df = df.iloc[::7].head(6).copy()
            df.loc[df.index[labelled:], ["diagnosis", "target"]] = ""
            return df
        return cohort(metadata, data_dir, tmp_path / name, edit)

    run_dir = tmp_path / "run"  # a training run's folder, given for its bundle
    shutil.copytree(SHIPPED, run_dir / "bundle")
    code, _, err = run(capsys, "evaluate", str(run_dir), str(small("a", 4)), "--out",
                       str(tmp_path / "e0"))
    assert one_error(err, code, 3) == (f"error: model bundle: {run_dir} is a training run "
                                       f"folder, not a bundle: its bundle is {run_dir / 'bundle'}")
    ev = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(SHIPPED), str(tmp_path / "a"), "--out", str(ev))
    assert code == 0, err
    assert ("note: the metrics cover 4 of the 6 scored images; the other 2 have no usable label"
            in err)
    before = (ev / "scores.evaluation.json").read_bytes()
    # other data (or another bundle) into the same --out: its rows were kept and reported
    code, _, err = run(capsys, "evaluate", str(SHIPPED), str(small("b", 6)), "--out", str(ev))
    assert one_error(err, code).startswith(f"error: --out {ev} holds scores this evaluation "
                                           f"cannot resume")
    assert (ev / "scores.evaluation.json").read_bytes() == before
    # the same evaluation again resumes (nothing left to score)
    code, _, err = run(capsys, "evaluate", str(SHIPPED), str(tmp_path / "a"), "--out", str(ev))
    assert code == 0, err

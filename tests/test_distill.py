"""Distilling (``train.distill_targets`` / ``train.distill_weight``, ``dermsight
distill-targets``): the soft-target loss, the file and its refusals, the teachers' targets on a
config's training images, and a training run that reads them image by image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.train.config import ConfigError, load_config  # noqa: E402
from dermsight.train.distill import (  # noqa: E402
    load_soft_targets,
    merge_soft_targets,
    write_soft_targets,
)
from dermsight.train.loop import soft_cross_entropy, weighted_ce  # noqa: E402

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "src" / "dermsight" / "assets" / "default"
CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _tiny(data_dir: Path) -> list[str]:
    return [f"data.root={data_dir}", "data.limit=24", "train.epochs=1", "train.batch_size=8",
            "input.size=64", "train.eval_batch_size=16", "train.num_threads=1"]


def test_soft_cross_entropy_is_the_label_loss_for_one_hot_targets_and_stops_at_the_target(
) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 9, generator=g)
    y = torch.randint(0, 9, (16,), generator=g)
    sw = torch.rand(16, generator=g) + 0.5
    cw = torch.rand(9, generator=g) + 0.5
    one_hot = torch.nn.functional.one_hot(y, 9).float()
    hard = weighted_ce(logits, y, sw, cw, 0.0)
    assert torch.allclose(soft_cross_entropy(logits, one_hot, y, sw, cw), hard, atol=1e-6)
    assert torch.allclose(soft_cross_entropy(logits, one_hot, y, sw, None),
                          weighted_ce(logits, y, sw, None, 0.0), atol=1e-6)
    # the gradient vanishes where the prediction equals the soft target, not before
    q = torch.softmax(torch.randn(16, 9, generator=g), dim=1)
    at_target = q.log().clone().requires_grad_(True)
    soft_cross_entropy(at_target, q, y, sw, cw).backward()
    assert at_target.grad is not None
    assert at_target.grad.abs().max() < 1e-6
    elsewhere = logits.clone().requires_grad_(True)
    soft_cross_entropy(elsewhere, q, y, sw, cw).backward()
    assert elsewhere.grad is not None
    assert elsewhere.grad.abs().max() > 1e-3


def test_soft_target_file_is_read_by_image_id_and_refused_when_wrong(tmp_path: Path) -> None:
    p = np.eye(9, dtype=np.float32)[[0, 1, 4]]
    f = tmp_path / "t.npz"
    write_soft_targets(f, ["a", "b", "c"], CLASSES, p, {"teachers": []})
    got = load_soft_targets(f, ["c", "a"], CLASSES)
    assert np.array_equal(got, p[[2, 0]])
    with pytest.raises(ConfigError, match="no target for 1 of the 2"):
        load_soft_targets(f, ["a", "zz"], CLASSES)
    with pytest.raises(ConfigError, match="has classes"):
        load_soft_targets(f, ["a"], CLASSES[:-1])
    with pytest.raises(ConfigError, match="no such file"):
        load_soft_targets(tmp_path / "missing.npz", ["a"], CLASSES)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a soft-target file"):
        load_soft_targets(tmp_path / "junk.npz", ["a"], CLASSES)
    write_soft_targets(tmp_path / "bad.npz", ["a"], CLASSES, np.full((1, 9), 0.5), {})
    with pytest.raises(ConfigError, match="not probabilities"):
        load_soft_targets(tmp_path / "bad.npz", ["a"], CLASSES)


def test_merged_targets_are_the_mean_over_every_teacher_whatever_the_row_order() -> None:
    """A two-teacher set and a one-teacher set merge 2 : 1 into the three teachers' mean; rows are
    matched by image id, and sets for other images or other held-out sources are refused."""
    rng = np.random.default_rng(0)
    t1, t2, t3 = (rng.dirichlet(np.ones(9), size=4) for _ in range(3))
    ids = ["a", "b", "c", "d"]
    pair = (ids, (t1 + t2) / 2, {"teachers": [{"n": 1}, {"n": 2}], "holdout_sources": ["x"]})
    shuffled = [2, 0, 3, 1]
    third = ([ids[k] for k in shuffled], t3[shuffled],
             {"teachers": [{"n": 3}], "holdout_sources": ["x"]})
    got_ids, probs, prov = merge_soft_targets([pair, third])
    assert got_ids == ids
    assert np.allclose(probs, (t1 + t2 + t3) / 3, atol=1e-6)
    assert [t["n"] for t in prov["teachers"]] == [1, 2, 3]
    assert [m["n_teachers"] for m in prov["merged_from"]] == [2, 1]
    with pytest.raises(ConfigError, match="other images"):
        merge_soft_targets([pair, (["a", "b", "c", "e"], t3, third[2])])
    with pytest.raises(ConfigError, match="held-out sources"):
        merge_soft_targets([pair, (ids, t3, {"teachers": [{}], "holdout_sources": []})])


def test_config_refuses_distilling_without_targets_or_with_mixup() -> None:
    cfg = REPO / "configs" / "default.yaml"
    with pytest.raises(ConfigError, match=r"needs train\.distill_targets"):
        load_config(cfg, ["train.distill_weight=0.5"])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        load_config(cfg, ["train.distill_weight=1.5", "train.distill_targets=t.npz"])
    with pytest.raises(ConfigError, match="mixup"):
        load_config(cfg, ["train.distill_weight=0.5", "train.distill_targets=t.npz",
                          "train.mixup_alpha=0.2"])
    assert load_config(cfg).train.distill_weight == 0  # off in the shipped recipe


def test_distill_targets_are_the_teachers_probabilities_on_the_training_images(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermsight import Dermsight
    from dermsight.cli import main
    from dermsight.train.pipeline import prepare_data
    from dermsight.train.table import row_meta

    out = tmp_path / "targets.npz"
    argv = ["distill-targets", "--bundle", str(DEFAULT_BUNDLE), "--bundle", str(DEFAULT_BUNDLE),
            "--out", str(out), "--config", str(REPO / "configs" / "default.yaml")]
    for o in _tiny(data_dir):
        argv += ["--set", o]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code in (0, None), capsys.readouterr().err
    z = np.load(out)
    cfg = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir))
    df = prepare_data(cfg)
    train = df[df["split"] == "train"].reset_index(drop=True)
    assert list(z["image_id"]) == train["image_id"].tolist()
    assert list(z["classes"]) == cfg.data.classes
    assert np.allclose(z["p"].sum(axis=1), 1, atol=1e-5)
    provenance = json.loads(str(z["provenance"]))
    assert len(provenance["teachers"]) == 2
    assert provenance["n_images"] == len(train)
    # the same numbers the facade gives a user for that image and metadata
    model = Dermsight.load(DEFAULT_BUNDLE)
    row = train.iloc[3]
    p = model.predict(row["path"], meta=row_meta(row), heatmap=False)
    assert np.allclose(z["p"][3], [p.probabilities[c] for c in model.classes], atol=1e-5)
    # --merge adds an earlier file's teachers: this file (2 teachers) + one more = their mean
    merged = tmp_path / "merged.npz"
    with pytest.raises(SystemExit) as done:
        main(["distill-targets", "--merge", str(out), "--merge", str(out), "--out", str(merged),
              "--config", str(REPO / "configs" / "default.yaml")])
    assert done.value.code in (0, None), capsys.readouterr().err
    m = np.load(merged)
    assert list(m["image_id"]) == list(z["image_id"])
    assert np.allclose(m["p"], z["p"], atol=1e-6)
    assert len(json.loads(str(m["provenance"]))["teachers"]) == 4
    # --out naming an input (a --merge file, the config) is refused before any work: the
    # input stays as it was
    before = out.read_bytes()
    config = REPO / "configs" / "default.yaml"
    for target, words in ((out, "is the --merge file 1"), (config, "is the --config file")):
        with pytest.raises(SystemExit) as done:
            main(["distill-targets", "--merge", str(out), "--bundle", str(DEFAULT_BUNDLE),
                  "--out", str(target), "--config", str(config)])
        err = capsys.readouterr().err
        assert done.value.code == 2, err
        assert words in err
    assert out.read_bytes() == before
    with pytest.raises(SystemExit) as done:  # nothing to distil from
        main(["distill-targets", "--out", str(tmp_path / "x.npz")])
    assert done.value.code == 2
    assert "at least one teacher" in capsys.readouterr().err
    # a teacher that is not there, or is not a bundle, exits 3 as any unusable bundle does
    for bad in (tmp_path / "nope", tmp_path):
        with pytest.raises(SystemExit) as done:
            main(["distill-targets", "--bundle", str(bad), "--out", str(tmp_path / "x.npz")])
        err = capsys.readouterr().err
        assert done.value.code == 3, err
        assert "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow
def test_training_reads_each_images_own_soft_target(data_dir: Path, tmp_path: Path) -> None:
    """One-hot targets of the images' own labels, stored in another order, train exactly as the
    labels do (so each image gets its own row); other targets change the loss."""
    from dermsight.train.pipeline import prepare_data, run

    base = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir))
    train = prepare_data(base)
    train = train[train["split"] == "train"].sample(frac=1.0, random_state=3)
    ids, labels = train["image_id"].tolist(), train["label"].to_numpy()
    one_hot, nv = tmp_path / "one_hot.npz", tmp_path / "nv.npz"
    write_soft_targets(one_hot, ids, base.data.classes, np.eye(9, dtype=np.float32)[labels], {})
    write_soft_targets(nv, ids, base.data.classes,
                       np.tile(np.eye(9, dtype=np.float32)[1], (len(ids), 1)), {})

    def loss(name: str, extra: list[str]) -> float:
        cfg = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir) + extra)
        run(cfg, tmp_path / name, stage="train")
        log = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        return float(json.loads(log[-1])["train_loss"])

    plain = loss("plain", [])
    same = loss("one_hot", ["train.distill_weight=1.0", f"train.distill_targets={one_hot}"])
    other = loss("nv", ["train.distill_weight=0.5", f"train.distill_targets={nv}"])
    assert same == pytest.approx(plain, rel=1e-4)
    assert abs(other - plain) > 1e-3

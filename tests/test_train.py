"""Training side (needs the [train] extra): packaged ImageNet weights, splits, calibration,
ONNX parity, a tiny end-to-end training run, and a 2-process DDP smoke test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, preprocess  # noqa: E402
from dermsight.train.calibrate import fit_temperature, threshold_for_sensitivity  # noqa: E402
from dermsight.train.config import DataConfig, load_config  # noqa: E402
from dermsight.train.network import ConfigError, LesionNet, load_imagenet_classifier  # noqa: E402
from dermsight.train.table import assign_split, load_table  # noqa: E402

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]


def test_packaged_imagenet_weights_recognise_espresso() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    net = load_imagenet_classifier("tf_efficientnet_lite0").eval()
    x = torch.from_numpy(preprocess(skimage_data.coffee(), InputSpec(size=224, crop="none")))
    with torch.no_grad():
        p = net(x[None]).softmax(1)[0]
    assert int(p.argmax()) == 967  # ImageNet class 967 = "espresso"
    assert float(p.max()) > 0.8


def test_unknown_backbone_and_bad_config_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backbone"):
        LesionNet("not_a_net", 8, 15, pretrained=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epocks: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epocks"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_holdout_split_is_group_disjoint_and_stratified(data_dir: Path) -> None:
    cfg = DataConfig(root=str(data_dir))
    df = load_table(cfg)
    split = assign_split(df, cfg)
    groups = df.groupby("group_id")[[]].size().index
    per_group = split.groupby(df["group_id"]).nunique()
    assert (per_group == 1).all()
    assert len(per_group) == len(groups)
    frac = split.value_counts(normalize=True)
    assert frac["test"] == pytest.approx(0.15, abs=0.02)
    assert frac["val"] == pytest.approx(0.15, abs=0.02)
    overall = df["diagnosis"].value_counts(normalize=True)
    for s in ("train", "val", "test"):
        part = df.loc[split == s, "diagnosis"].value_counts(normalize=True)
        assert (part - overall).abs().max() < 0.03
    assert split.equals(assign_split(df, cfg))  # deterministic


def test_threshold_for_sensitivity_semantics() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    pos = np.ones(10, bool)
    t = threshold_for_sensitivity(scores, pos, 0.9)
    assert t == 0.2
    assert (scores[pos] >= t).mean() >= 0.9
    assert threshold_for_sensitivity(scores, pos, 1.0) == 0.1


def test_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_onnx_matches_pytorch_on_real_images(data_dir: Path, sample_ids: list[str]) -> None:
    from dermsight.io.decode import decode_image
    from dermsight.records import Metadata
    from dermsight.train.export import export_onnx, parity

    torch.manual_seed(0)
    net = LesionNet("tf_efficientnet_lite0", 8, MetaSpec().dim, pretrained=True).eval()
    spec = InputSpec(size=160)
    imgs = [decode_image(data_dir / "images" / f"{i}.jpg") for i in sample_ids[:6]]
    x = np.stack([preprocess(im, spec) for im in imgs])
    m = np.stack([encode_meta(Metadata(age=50, sex="male"), MetaSpec()) for _ in imgs])
    data = export_onnx(net, 160)
    assert parity(net, data, x, m) < 1e-4
    # any height and width (the whole-image heatmap, dermsight.camgrid, needs it)
    from dermsight.onnxsession import ort_session

    wide = np.ascontiguousarray(np.concatenate([x[:1], x[1:2]], axis=3))  # 160 x 320
    assert ort_session(data, threads=1).run(["cam"], {"image": wide, "meta": m[:1]})[0].shape \
        == (1, 8, 5, 10)


def _tiny_overrides(data_dir: Path) -> list[str]:
    return [f"data.root={data_dir}", "data.limit=24", "train.epochs=1", "train.batch_size=8",
            "input.size=64", "evaluation.n_boot=20", "train.eval_batch_size=16"]


@pytest.mark.slow
def test_tiny_end_to_end_training_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dermsight.cli", "train", "--config",
           str(REPO / "configs" / "default.yaml"), "--out", str(out)]
    for o in _tiny_overrides(data_dir):
        cmd += ["--set", o]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1
    assert "val_balanced_accuracy" in log[0]
    for f in ("last.pt", "best.pt", "split.csv"):
        assert (out / f).exists()
    from dermsight import Dermsight

    model = Dermsight.load(out / "bundle")
    card = model.card.to_dict()
    assert card["metrics"]["test"]
    assert card["data"]["split_sha256"]["test"]
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] < 1e-4
    assert (out / "bundle" / "report.html").read_text().count("<html") == 1
    # the per-source table and the skin-tone table (every band counted) reach card and report
    rows = card["cross_source"]["rows"]
    assert rows
    assert {r["protocol"] for r in rows} <= {"test_split_by_source",
                                                      "leave_one_source_out"}
    by_ita = card["metrics"]["test"]["by_ita"]
    assert len(by_ita["bands"]) == 7
    assert by_ita["n"] == card["metrics"]["test"]["n"]
    report = (out / "bundle" / "report.html").read_text()
    assert "Cross-source validation" in report
    assert "By skin tone (ITA" in report
    # trained on the shared JPEG-90 files: the compressed note's measured limits apply, and say so
    files = card["data"]["train_compression"]
    assert files == {"JPEG 90": card["data"]["by_split"]["train"]["n"]}
    assert card["gate"]["quality"]["flag_jpeg_quality"] == 85
    assert any(line.startswith("Training images by compression (JPEG 90: ")
               for line in card["limitations"])
    assert "Training images by compression" in report
    split = pd.read_csv(out / "split.csv")
    assert split.groupby("group_id")["split"].nunique().max() == 1
    p = model.predict(data_dir / "images" / f"{split['image_id'][0]}.jpg", age=40)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    # --resume on a finished run trains nothing more and still finalises
    r2 = subprocess.run([*cmd, "--resume", "--stage", "train"], capture_output=True, text=True,
                        timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_one_command_and_seed_train_the_same_network(data_dir: Path, tmp_path: Path) -> None:
    """Two processes (torch seeds its global generator at random in each) running the same
    command with the same seed end with the same weights; another seed gives other weights."""
    def train(name: str, seed: int) -> dict[str, Any]:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "dermsight.cli", "train", "--config",
               str(REPO / "configs" / "default.yaml"), "--out", str(out), "--stage", "train",
               "--set", f"seed={seed}"]
        for o in _tiny_overrides(data_dir):
            cmd += ["--set", o]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return dict(torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"])

    a, b, c = train("a", 7), train("b", 7), train("c", 8)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # tools/compare_runs.py, which checks a rebuild of the shipped model, says the same
    tool = [sys.executable, str(REPO / "tools" / "compare_runs.py")]
    same = subprocess.run([*tool, str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "best.pt: identical" in same.stdout
    other = subprocess.run([*tool, str(tmp_path / "a"), str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 1, other.stdout + other.stderr
    assert "last.pt: DIFFERENT" in other.stdout


@pytest.mark.slow
def test_source_balance_scope_reaches_the_training_loss(data_dir: Path, tmp_path: Path) -> None:
    """``train.source_balance_scope: specific`` trains (through ``dermsight train``) and gives
    other weights than the whole-loss scope from the same seed and data; the run records it."""
    def train(scope: str) -> dict[str, Any]:
        out = tmp_path / scope
        cmd = [sys.executable, "-m", "dermsight.cli", "train", "--config",
               str(REPO / "configs" / "default.yaml"), "--out", str(out), "--stage", "train",
               "--set", "train.source_balance=1.0", "--set", f"train.source_balance_scope={scope}"]
        for o in _tiny_overrides(data_dir):
            cmd += ["--set", o]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        saved = json.loads((out / "config.json").read_text())
        assert saved["train"]["source_balance_scope"] == scope
        return dict(torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"])

    whole, specific = train("all"), train("specific")
    assert not all(torch.equal(whole[k], specific[k]) for k in whole)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``dermsight`` in this process (the same guarded entry point as the console script,
    without paying torch's import again in a subprocess)."""
    from dermsight.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0), capsys.readouterr().err


def test_cli_train_errors_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _cli(["train", "--config", str(REPO / "configs" / "default.yaml"), "--out",
                      str(tmp_path / "o"), "--set", f"data.root={tmp_path / 'nodata'}"], capsys)
    assert code == 2
    assert "metadata.csv" in err
    assert "Traceback" not in err
    monkeypatch.chdir(REPO)  # the default config's data root is relative to the checkout
    code, err = _cli(["train", "--set", "model.backbone=nonexistent_net", "--set",
                      "train.epochs=1", "--out", str(tmp_path / "o2")], capsys)
    assert code == 2
    assert "unknown backbone" in err
    assert "Traceback" not in err


def test_class_weights_balance_the_loss_or_the_sampler() -> None:
    from dermsight.train.loop import class_weights

    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    full = class_weights(labels, 3, 1.0).numpy()
    mass = np.bincount(labels, weights=full[labels])  # total weight each class gets
    assert np.allclose(mass, mass[0])  # power 1: every class equally often / equally heavy
    half = class_weights(labels, 3, 0.5).numpy()
    assert half[2] / half[0] == pytest.approx(4.0)  # sqrt(80 / 5)
    assert float((half[labels]).mean()) == pytest.approx(1.0)  # the mean per-sample weight stays 1


def test_balanced_sampler_draws_by_class_weight_with_ema_on(data_dir: Path) -> None:
    """train.imbalance=balanced_sampler gives the loader a class-weighted sampler whatever the EMA
    setting (it was once silently dropped whenever EMA was on); under torchrun a
    DistributedSampler; otherwise a plain shuffle."""
    from torch.utils.data import DistributedSampler, WeightedRandomSampler

    from dermsight.train.loop import DistInfo, class_weights, train_sampler
    from dermsight.train.pipeline import make_datasets, prepare_data

    cfg = load_config(REPO / "configs" / "default.yaml",
                      [*_tiny_overrides(data_dir), "train.imbalance=balanced_sampler"])
    assert cfg.train.ema_decay > 0
    train = make_datasets(cfg, prepare_data(cfg), ("train",))["train"]
    sampler = train_sampler(cfg, train, DistInfo())
    assert isinstance(sampler, WeightedRandomSampler)
    w = class_weights(train.labels, len(cfg.data.classes), cfg.train.class_weight_power)
    assert np.allclose(sampler.weights.numpy(), w.numpy()[train.labels])
    assert len(set(sampler.weights.tolist())) > 1  # the tiny split has several classes
    plain = load_config(REPO / "configs" / "default.yaml", _tiny_overrides(data_dir))
    assert train_sampler(plain, train, DistInfo()) is None
    assert isinstance(train_sampler(plain, train, DistInfo(rank=1, world=2)), DistributedSampler)


def test_weight_average_becomes_the_kept_model(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.swa_from: best.pt holds the mean of the per-epoch (EMA) weights, the selected epoch
    moves to best_epoch.pt, and --resume on the finished run changes neither."""
    from dermsight.train import loop
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data
    from dermsight.train.swa import WeightAverage

    avg = WeightAverage()
    states = [{"w": torch.tensor([1.0, 2.0]), "k": torch.tensor(1)},
              {"w": torch.tensor([3.0, 6.0]), "k": torch.tensor(2)},
              {"w": torch.tensor([5.0, 1.0]), "k": torch.tensor(3)}]
    for st in states:
        avg.add(st)
    assert torch.allclose(avg.state["w"], torch.tensor([3.0, 3.0]))
    assert int(avg.state["k"]) == 3  # integer buffers (BatchNorm counters): the newest
    assert states[0]["w"].tolist() == [1.0, 2.0]  # the inputs are not modified
    assert WeightAverage.from_dict(avg.to_dict()).n == 3
    with pytest.raises(ValueError, match="same keys"):
        avg.add({"other": torch.zeros(2)})
    with pytest.raises(ConfigError, match="swa_from"):
        load_config(REPO / "configs" / "default.yaml", ["train.epochs=3", "train.swa_from=4"])

    cfg = load_config(REPO / "configs" / "default.yaml",
                      [*_tiny_overrides(data_dir), "train.epochs=2", "train.swa_from=1"])
    # epoch 1 is "selected", so best_epoch.pt holds epoch 1's weights and last.pt epoch 2's
    monkeypatch.setattr(loop, "select_score", lambda vm, metric, epoch: -float(epoch))
    df = prepare_data(cfg)
    ds = make_datasets(cfg, df, ("train", "val"))
    out = tmp_path / "run"
    out.mkdir()
    torch.manual_seed(0)
    summary = loop.train_model(cfg, build_net(cfg, MetaSpec()), ds["train"], ds["val"], out,
                               resume=False, info=loop.DistInfo())
    assert summary["kept"] == "swa"
    assert summary["best_epoch"] is None
    assert summary["swa_epochs"] == [1, 2]
    assert summary["swa_snapshots"] == 2
    assert summary["best_single_epoch"] == 1
    assert 0 <= summary["swa_val_balanced_accuracy"] <= 1

    def load(name: str, key: str = "model") -> dict[str, Any]:
        return dict(torch.load(out / name, map_location="cpu", weights_only=False)[key])

    kept, first, second = load("best.pt"), load("best_epoch.pt"), load("last.pt", "ema")
    floats = [k for k in kept if kept[k].dtype.is_floating_point]
    moved = [k for k in floats if not torch.equal(first[k], second[k])]
    assert moved  # the two epochs differ, so the mean is a third set of weights
    for k in floats:
        assert torch.allclose(kept[k], (first[k] + second[k]) / 2, atol=1e-6), k
    again = loop.train_model(cfg, build_net(cfg, MetaSpec()), ds["train"], ds["val"], out,
                             resume=True, info=loop.DistInfo())
    assert again == summary
    assert all(torch.equal(load("best_epoch.pt")[k], first[k]) for k in first)
    assert all(torch.equal(load("best.pt")[k], kept[k]) for k in kept)


def test_mixup_mixes_image_and_metadata_reproducibly() -> None:
    from dermsight.train.loop import mix_batch

    g = torch.Generator().manual_seed(0)
    x, m = torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 5, generator=g)
    xm, mm, lam = mix_batch(x, m, 0.4, seed=42, step=7)
    assert 0.0 < lam < 1.0
    assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0))
    assert torch.allclose(mm, lam * m + (1 - lam) * m.flip(0))  # metadata follows the image
    assert mix_batch(x, m, 0.4, seed=42, step=7)[2] == lam  # a resumed run draws the same lam
    assert mix_batch(x, m, 0.4, seed=42, step=8)[2] != lam
    with pytest.raises(ConfigError, match="mixup_alpha"):
        load_config(REPO / "configs" / "default.yaml", ["train.mixup_alpha=-1"])


def test_freeze_bn_stats_keeps_the_backbones_imagenet_statistics_while_it_trains(
        data_dir: Path) -> None:
    """``model.freeze_bn_stats``: after training steps the backbone's BatchNorm running
    statistics are the ImageNet ones while their scale and shift moved; the metadata branch's
    BatchNorm (no pretrained statistics) still learns its own; the option is refused without
    pretrained weights."""
    from dermsight.train.loop import DistInfo, prepare_net
    from dermsight.train.network import set_train_mode
    from dermsight.train.pipeline import build_net

    def steps(freeze: bool) -> tuple[LesionNet, dict[str, torch.Tensor]]:
        cfg = load_config(REPO / "configs" / "default.yaml",
                          [*_tiny_overrides(data_dir), f"model.freeze_bn_stats={freeze}"])
        torch.manual_seed(0)
        net, _ = prepare_net(cfg, build_net(cfg, MetaSpec()), DistInfo())
        before = {k: v.clone() for k, v in net.state_dict().items()}
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            set_train_mode(net, True)
            x, m = torch.randn(4, 3, 64, 64, generator=g), torch.rand(4, net.meta_dim, generator=g)
            opt.zero_grad()
            (-net(x, m)[:, 0].mean()).backward()  # log P(MEL): the head gives log-probabilities
            opt.step()
        return net, before

    net, before = steps(True)
    after = net.state_dict()
    last_bn = "backbone.bn2"  # the head's BatchNorm: trainable, after every frozen block
    for key in (f"{last_bn}.running_mean", f"{last_bn}.running_var", "backbone.bn1.running_mean"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after[f"{last_bn}.weight"], before[f"{last_bn}.weight"])
    assert not torch.equal(after["meta.1.running_mean"], before["meta.1.running_mean"])
    bns = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 10
    assert not any(m.training for m in bns)
    # the default (off): the same steps move the trainable blocks' statistics
    net_off, before_off = steps(False)
    assert not torch.equal(net_off.state_dict()[f"{last_bn}.running_mean"],
                           before_off[f"{last_bn}.running_mean"])
    with pytest.raises(ConfigError, match="freeze_bn_stats"):
        load_config(REPO / "configs" / "default.yaml",
                    ["model.freeze_bn_stats=true", "model.pretrained=false"])


def test_sharpness_aware_step_uses_the_gradient_at_the_worst_nearby_weights() -> None:
    """``train.sam_rho``: the step's gradient is taken at w + rho * g / ||g|| and applied to w
    (checked against the closed form for sum(w**4) / 4, whose gradient is w**3); BatchNorm
    counts the batch once; a learning rate of 0 leaves the weights where they were."""
    from dermsight.train.sharpness import sharpness_aware_step

    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=0.1)
    rho = 0.05
    sharpness_aware_step(opt, (w**4).sum() / 4, lambda: (w**4).sum() / 4, rho, torch.nn.Module())
    g = w0**3
    expected = w0 - 0.1 * (w0 + rho * g / g.norm()) ** 3
    assert torch.allclose(w.detach(), expected)
    assert not torch.allclose(expected, w0 - 0.1 * g)  # not the plain step

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
                              torch.nn.Linear(4, 1)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(16, 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    sharpness_aware_step(opt, net(x).square().mean(), lambda: net(x).square().mean(), 0.5, net)
    after = net.state_dict()
    for k in ("0.weight", "0.bias", "2.weight", "1.weight"):
        assert torch.equal(after[k], before[k]), k  # perturbation undone (lr 0)
    batch_mean = net[0](x).mean(0).detach()
    assert torch.allclose(after["1.running_mean"], 0.1 * batch_mean, atol=1e-6)  # counted once
    assert net[1].momentum == 0.1  # restored after the second pass
    with pytest.raises(ConfigError, match="sam_rho"):
        load_config(REPO / "configs" / "default.yaml", ["train.sam_rho=-0.1"])


def test_drop_path_drops_blocks_in_training_only() -> None:
    """``model.drop_path_rate``: the backbone's residual blocks get stochastic depth rising to
    the rate; two training passes of the same input differ, scoring is deterministic and equal
    to the same weights without it; the rate is checked."""
    from timm.layers import DropPath

    torch.manual_seed(0)
    net = LesionNet("tf_efficientnet_lite0", 3, 4, drop_path_rate=0.2)
    rates = [m.drop_prob for m in net.backbone.modules() if isinstance(m, DropPath)]
    assert rates
    assert 0.15 < max(rates) <= 0.2
    assert rates == sorted(rates)
    plain = LesionNet("tf_efficientnet_lite0", 3, 4, pretrained=False)
    plain.load_state_dict(net.state_dict())  # the same parameters: stochastic depth adds none
    x, m = torch.randn(4, 3, 64, 64), torch.rand(4, 4)
    net.train()
    plain.train()
    torch.manual_seed(1)
    a = net.feature_map(x)
    torch.manual_seed(2)
    b = net.feature_map(x)
    assert not torch.allclose(a, b)  # the batch statistics are the same: blocks were dropped
    torch.manual_seed(1)
    assert not torch.allclose(a, plain.feature_map(x))
    plain.load_state_dict(net.state_dict())  # the running statistics those passes moved
    net.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(net(x, m), plain(x, m))
    with pytest.raises(ConfigError, match="drop_path_rate"):
        load_config(REPO / "configs" / "default.yaml", ["model.drop_path_rate=1.5"])


def test_mixup_can_spare_the_pairs_that_hold_an_unk_image() -> None:
    """``train.mixup_spare_unk``: a pair with a UNK image stays unmixed (image, metadata, loss);
    the other pairs get the lam plain mixup draws for the same seed and step."""
    from dermsight.train.loop import mix_batch, mix_batch_sparing, mixed_ce, weighted_ce

    g = torch.Generator().manual_seed(1)
    x, m = torch.rand(6, 3, 8, 8, generator=g), torch.rand(6, 5, generator=g)
    y = torch.tensor([8, 0, 1, 4, 2, 3])  # UNK (8) first: pairs are (0, 5), (1, 4), (2, 3)
    xs, ms, w = mix_batch_sparing(x, m, y, 0.4, seed=42, step=7, spare=8)
    xm, mm, lam = mix_batch(x, m, 0.4, seed=42, step=7)
    assert w.tolist() == pytest.approx([1.0, lam, lam, lam, lam, 1.0])
    for i in (0, 5):
        assert torch.equal(xs[i], x[i])
        assert torch.equal(ms[i], m[i])
    for i in (1, 2, 3, 4):
        assert torch.equal(xs[i], xm[i])
        assert torch.equal(ms[i], mm[i])

    logits = torch.randn(6, 9, generator=g)
    sw, cw = torch.rand(6, generator=g) + 0.5, torch.rand(9, generator=g) + 0.5
    ones = torch.ones(6)
    # w = 1 everywhere: the plain weighted loss; the same lam everywhere (no class or sample
    # weights): plain mixup's lam * CE(y) + (1 - lam) * CE(mirror)
    assert mixed_ce(logits, y, sw, cw, 0.0, w=ones) == pytest.approx(
        float(weighted_ce(logits, y, sw, cw, 0.0)))
    plain = lam * weighted_ce(logits, y, ones, None, 0.0) + \
        (1 - lam) * weighted_ce(logits, y.flip(0), ones, None, 0.0)
    assert mixed_ce(logits, y, ones, None, 0.0, w=ones * lam) == pytest.approx(float(plain))
    # a spared UNK sample's loss is its own label's cross-entropy alone; mixed, it would not be
    only_0 = torch.tensor([1.0, 0, 0, 0, 0, 0])
    ce0 = float(torch.nn.functional.cross_entropy(logits[:1], y[:1]))
    assert float(mixed_ce(logits, y, only_0, None, 0.0, w=w)) == pytest.approx(ce0)
    assert float(mixed_ce(logits, y, only_0, None, 0.0, w=ones * lam)) != pytest.approx(ce0)

    for bad in (["train.mixup_spare_unk=true"],  # without mixup
                ["train.mixup_spare_unk=true", "train.mixup_alpha=0.2",
                 "train.source_adversary=0.5"],
                ["train.mixup_spare_unk=true", "train.mixup_alpha=0.2",
                 "data.classes=[MEL,NV,BKL]", "model.unspecified_head=false"]):
        with pytest.raises(ConfigError, match="mixup_spare_unk"):
            load_config(REPO / "configs" / "default.yaml", bad)


def test_mixstyle_mixes_feature_statistics_in_training_only() -> None:
    """MixStyle keeps each image's normalised features and gives it channel statistics between
    those of the batch; in eval mode (validation, export, serving) it changes nothing."""
    from dermsight.train.mixstyle import MixStyle
    from dermsight.train.network import add_mixstyle

    torch.manual_seed(0)
    scale = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    x = torch.randn(4, 6, 7, 7) * scale + scale * 3  # four very different "styles"
    ms = MixStyle(p=1.0, alpha=0.3).train()
    y = ms(x)
    mu, sd = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
    mu_y, sd_y = y.mean((2, 3), keepdim=True), y.std((2, 3), keepdim=True)
    assert torch.allclose((y - mu_y) / sd_y, (x - mu) / sd, atol=1e-4)  # content kept
    assert not torch.allclose(mu_y, mu, atol=1e-3)  # style moved
    lo, hi = mu.min(0).values, mu.max(0).values
    assert bool(((mu_y >= lo - 1e-5) & (mu_y <= hi + 1e-5)).all())  # between the batch's styles
    assert torch.equal(ms.eval()(x), x)
    assert torch.equal(MixStyle(p=0.0).train()(x), x)

    torch.manual_seed(1)
    plain = LesionNet("tf_efficientnet_lite0", 4, 15, pretrained=False)
    mixed = LesionNet("tf_efficientnet_lite0", 4, 15, pretrained=False)
    mixed.load_state_dict(plain.state_dict())
    add_mixstyle(mixed, 1.0, 0.1, [1, 2, 3])
    assert mixed.state_dict().keys() == plain.state_dict().keys()  # nothing new to save/export
    img, meta = torch.rand(4, 3, 64, 64), torch.rand(4, 15)
    with torch.no_grad():
        assert torch.equal(mixed.eval()(img, meta), plain.eval()(img, meta))
        mixed.train()
        plain.train()
        assert not torch.allclose(mixed.feature_map(img), plain.feature_map(img), atol=1e-3)
        mixed.mixstyle.p = 0.0  # type: ignore[union-attr]
        # the block-by-block path is timm's forward_features when nothing is mixed
        assert torch.allclose(mixed.feature_map(img), plain.feature_map(img), atol=1e-5)
    for after in ([6], [], [-1]):
        with pytest.raises(ConfigError, match="mixstyle_after"):
            add_mixstyle(mixed, 0.5, 0.1, after)
    with pytest.raises(ConfigError, match="mixstyle_p"):
        load_config(REPO / "configs" / "default.yaml", ["train.mixstyle_p=1.5"])


def test_balanced_sampler_is_refused_under_ddp(tmp_path: Path) -> None:
    from dermsight.train.loop import DistInfo, check_distributed, train_model

    cfg = load_config(REPO / "configs" / "default.yaml", ["train.imbalance=balanced_sampler"])
    check_distributed(cfg, DistInfo(rank=0, world=1))  # one process: fine
    with pytest.raises(ConfigError, match="balanced_sampler is not supported under torchrun"):
        check_distributed(cfg, DistInfo(rank=1, world=2))
    with pytest.raises(ConfigError, match="balanced_sampler is not supported under torchrun"):
        train_model(cfg, None, None, None, tmp_path, resume=False,  # type: ignore[arg-type]
                    info=DistInfo(rank=0, world=2))
    check_distributed(load_config(REPO / "configs" / "default.yaml"), DistInfo(rank=0, world=2))


def test_head_probe_trains_the_head_only_on_the_frozen_backbone(
        data_dir: Path, tmp_path: Path) -> None:
    """LP-FT's probe (train.head_probe_epochs) changes the metadata branch and the classifier and
    nothing of the backbone (weights and BatchNorm statistics); settings it cannot honour are
    refused."""
    from dermsight.train.loop import DistInfo, check_distributed, class_weights, probe_head
    from dermsight.train.network import freeze_early
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data

    cfg = load_config(REPO / "configs" / "default.yaml",
                      [*_tiny_overrides(data_dir), "train.head_probe_epochs=2"])
    torch.manual_seed(0)
    net = build_net(cfg, MetaSpec())
    freeze_early(net, cfg.model.freeze_fraction)
    train = make_datasets(cfg, prepare_data(cfg), ("train",))["train"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    w = class_weights(train.labels, len(cfg.data.classes), cfg.train.class_weight_power)
    probe_head(cfg, net, train, w, tmp_path / "probe.jsonl")
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("classifier.") for k in changed)
    assert any(k.startswith("meta.") for k in changed)
    assert all(k.startswith(("classifier.", "meta.")) for k in changed), changed
    log = [json.loads(x) for x in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert [r["head_probe_epoch"] for r in log] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in log)
    with pytest.raises(ConfigError, match="head_probe_epochs"):
        load_config(REPO / "configs" / "default.yaml", ["train.head_probe_epochs=-1"])
    with pytest.raises(ConfigError, match="head_probe_epochs needs"):
        load_config(REPO / "configs" / "default.yaml",
                    ["train.head_probe_epochs=1", "train.imbalance=balanced_sampler"])
    with pytest.raises(ConfigError, match="head_probe_epochs is not supported under torchrun"):
        check_distributed(cfg, DistInfo(rank=0, world=2))


@pytest.mark.slow
def test_ddp_two_process_gloo_smoke(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29517", "-m", "dermsight.cli", "train", "--config",
           str(REPO / "configs" / "default.yaml"), "--out", str(out), "--stage", "train"]
    for o in _tiny_overrides(data_dir):
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # mixup (sparing UNK pairs), MixStyle and weight averaging on: their paths run here in a real
    # (distributed) training loop
    r = subprocess.run([*cmd, "--set", "train.num_threads=1", "--set", "train.mixup_alpha=0.4",
                        "--set", "train.mixup_spare_unk=true",
                        "--set", "train.mixstyle_p=0.5", "--set", "train.swa_from=1"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1  # only rank 0 logs
    assert (out / "best.pt").exists()
    assert (out / "best_epoch.pt").exists()  # rank 0 kept the average, once
    assert json.loads((out / "train_summary.json").read_text())["swa_snapshots"] == 1


@pytest.mark.slow  # worker processes take a while to start
def test_batch_preparing_processes_change_nothing_but_speed(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.num_workers: the same tiny run (augmentations, metadata dropout and the source
    adversary's per-image targets all on) trained with batches made in-process and by two
    worker processes ends with bit-identical weights and validation figures."""
    from dermsight.train import adversary
    from dermsight.train.loop import DistInfo, train_model
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data

    monkeypatch.setattr(adversary, "MIN_CELL", 1)  # 24 training images: tiny cells
    runs = {}
    for workers in (0, 2):
        cfg = load_config(REPO / "configs" / "default.yaml",
                          [*_tiny_overrides(data_dir), "train.source_adversary=0.5",
                           f"train.num_workers={workers}"])
        data = make_datasets(cfg, prepare_data(cfg), ("train", "val"))
        torch.manual_seed(0)
        out = tmp_path / str(workers)
        out.mkdir()
        train_model(cfg, build_net(cfg, MetaSpec()), data["train"], data["val"], out,
                    resume=False, info=DistInfo())
        runs[workers] = out
    a, b = (torch.load(runs[w] / "last.pt", weights_only=False) for w in (0, 2))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["adversary"][k], b["adversary"][k]) for k in a["adversary"])
    log = [json.loads((runs[w] / "train_log.jsonl").read_text()) for w in (0, 2)]
    assert log[0]["val_nll"] == log[1]["val_nll"]
    with pytest.raises(ConfigError, match="num_workers"):
        load_config(REPO / "configs" / "default.yaml", ["train.num_workers=-1"])


def test_a_gpu_run_without_batch_processes_is_told_how_to_feed_it() -> None:
    from dermsight.train.loop import loader_hint

    assert loader_hint(torch.device("cpu"), 0) is None  # on a CPU in-process batches are right
    assert loader_hint(torch.device("cuda", 0), 8) is None
    hint = loader_hint(torch.device("cuda", 0), 0)
    assert hint is not None
    assert "train.num_workers=" in hint
    assert int(hint.split("train.num_workers=")[1].split()[0]) >= 1


def test_finalize_scores_on_every_core_unless_told(tmp_path: Path) -> None:
    """``evaluation.num_threads``: finalize's ONNX Runtime scoring uses one thread per core by
    default (not ``train.num_threads``, which the shipped recipe sets to 1), or the number given;
    negative numbers are refused."""
    from dermsight.bundle import load_bundle
    from dermsight.parallel import default_workers
    from dermsight.train.finalize.scoring import serving_model

    shipped = load_bundle()
    onnx = shipped.onnx_path.read_bytes()
    cfg = load_config(REPO / "configs" / "default.yaml")
    assert cfg.train.num_threads == 1
    assert cfg.evaluation.num_threads == 0
    model = serving_model(cfg, tmp_path / "a", onnx, shipped.card.input_spec,
                          shipped.card.meta_spec)
    assert model.session.threads == default_workers()
    one = load_config(REPO / "configs" / "default.yaml", ["evaluation.num_threads=1"])
    model = serving_model(one, tmp_path / "b", onnx, shipped.card.input_spec,
                          shipped.card.meta_spec)
    assert model.session.threads == 1
    with pytest.raises(ConfigError, match=r"evaluation\.num_threads"):
        load_config(REPO / "configs" / "default.yaml", ["evaluation.num_threads=-1"])

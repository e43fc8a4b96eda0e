"""The class-conditional source adversary (train.source_adversary): its targets and weights, the
reversed gradient, that it removes source information a classifier does not need, and its run
through the real training loop."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dermsight.preprocess import MetaSpec  # noqa: E402
from dermsight.train import adversary  # noqa: E402
from dermsight.train.adversary import (  # noqa: E402
    AdversaryTargets,
    SourceAdversary,
    adversary_loss,
    ramp,
    reverse_gradient,
)
from dermsight.train.config import ConfigError, load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cells_example() -> tuple[np.ndarray, np.ndarray]:
    """class 0: A 30, B 60; class 1: A 50 only; class 2: A 40, B 5 (too few), C 25."""
    labels = np.array([0] * 90 + [1] * 50 + [2] * 70)
    sources = np.array(["A"] * 30 + ["B"] * 60 + ["A"] * 50 + ["A"] * 40 + ["B"] * 5 + ["C"] * 25)
    return labels, sources


def test_targets_take_part_by_cell_and_weigh_sources_equally_within_a_class() -> None:
    labels, sources = _cells_example()
    t = AdversaryTargets.from_labels(labels, sources, 3)
    assert t.sources == ["A", "B", "C"]
    assert t.cells.tolist() == [[True, True, False], [False, False, False], [True, False, True]]
    assert t.describe(["X", "Y", "Z"]) == {"X": ["A", "B"], "Z": ["A", "C"]}
    # class 1 (one source) and the 5 class-2 images of B take no part
    assert (t.weight[labels == 1] == 0).all()
    assert (t.weight[(labels == 2) & (sources == "B")] == 0).all()
    for c in (0, 2):
        in_c = (labels == c) & (t.weight > 0)
        sums = {s: t.weight[in_c & (sources == s)].sum() for s in np.unique(sources[in_c])}
        assert len(sums) == 2
        assert np.allclose(list(sums.values()), in_c.sum() / 2)  # each source weighs the same
    assert t.weight[(labels == 0) & (sources == "A")][0] == pytest.approx(90 / (2 * 30))
    assert t.chance_loss == pytest.approx(math.log(2))
    # the cell size is a setting: at 5 the B images of class 2 join (three sources there)
    t5 = AdversaryTargets.from_labels(labels, sources, 3, min_cell=5)
    assert t5.cells[2].all()
    assert t5.chance_loss == pytest.approx((90 * math.log(2) + 70 * math.log(3)) / 160)
    # nobody takes part: zero loss, no NaN
    none = AdversaryTargets.from_labels(labels, sources, 3, min_cell=1000)
    assert not none.cells.any()
    assert none.chance_loss == 0.0
    logits = torch.zeros(4, 3)
    assert float(adversary_loss(logits, torch.zeros(4, dtype=torch.long), torch.zeros(4))) == 0.0


def test_adversary_chooses_among_its_class_sources_only() -> None:
    labels, sources = _cells_example()
    t = AdversaryTargets.from_labels(labels, sources, 3)
    head = SourceAdversary(8, t.cells)
    y = torch.tensor([0, 2, 2])
    out = head(torch.randn(3, 8), y)
    assert out.shape == (3, 3)
    assert torch.isfinite(out[0, :2]).all()
    assert out[0, 2] == float("-inf")
    assert torch.isfinite(out[1, [0, 2]]).all()
    assert out[1, 1] == float("-inf")
    # the loss is a proper cross-entropy over the allowed sources: finite, and at chance when the
    # logits are equal
    src = torch.tensor([1, 2, 0])
    equal = torch.where(torch.isfinite(out), 0.0, out).detach()
    loss = adversary_loss(equal, src, torch.ones(3))
    assert float(loss) == pytest.approx(math.log(2))


def test_reverse_gradient_and_ramp() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    (y * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.6))
    assert ramp(0, 100, 0.5) == 0.0
    steps = [ramp(s, 100, 0.5) for s in range(0, 101, 10)]
    assert steps == sorted(steps)
    assert 0.49 < steps[-1] <= 0.5
    assert ramp(500, 100, 0.5) == steps[-1]  # past the end: the peak's value


def _source_decodability(feats: np.ndarray, source: np.ndarray, y: np.ndarray) -> float:
    """How well the features tell the sources apart within each class: cross-validated balanced
    accuracy of a logistic regression, averaged over the classes (0.5 = chance)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return float(np.mean([cross_val_score(LogisticRegression(max_iter=2000), feats[y == c],
                                          source[y == c], cv=3, scoring="balanced_accuracy").mean()
                          for c in np.unique(y)]))


def test_reversed_gradient_removes_source_information_the_classifier_does_not_need() -> None:
    """A toy with the mechanism of the real one: inputs carry the lesion (noisy; it sets the class)
    and the camera (the source), and, as in the shared data, the source predicts the class (80 %
    of class 1 from camera B). Trained plainly, the features keep the camera (a shortcut); with
    the adversary they no longer tell the cameras apart within a class, and the class is still
    learnt. (At a reversal weight of 1 the adversary is fooled, its loss near chance, while a fresh
    probe still reads the camera at 0.91-0.95: gradient reversal hides more than it removes; at 3
    the probe falls to about 0.6.)"""
    rng = np.random.default_rng(0)
    n = 800
    lesion = rng.normal(size=(n, 2))
    y = (lesion[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(np.int64)
    source = (rng.random(n) < np.where(y == 1, 0.8, 0.2)).astype(np.int64)
    camera = (source * 2.0 - 1.0)[:, None] + 0.3 * rng.normal(size=(n, 2))
    x = torch.tensor(np.hstack([lesion, camera]), dtype=torch.float32)
    labels, src = torch.from_numpy(y), torch.from_numpy(source)
    t = AdversaryTargets.from_labels(y, np.where(source == 1, "B", "A"), 2)
    assert t.cells.all()

    def train(peak: float) -> tuple[np.ndarray, float]:
        torch.manual_seed(0)
        enc = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
        clf = torch.nn.Linear(8, 2)
        adv = SourceAdversary(8, t.cells, hidden=16)
        opt = torch.optim.Adam([*enc.parameters(), *clf.parameters(), *adv.parameters()], 1e-2)
        w = torch.from_numpy(t.weight)
        for step in range(800):
            f = enc(x)
            loss = torch.nn.functional.cross_entropy(clf(f), labels)
            loss = loss + adversary_loss(adv(reverse_gradient(f, ramp(step, 800, peak)), labels),
                                         src, w)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            f = enc(x)
            acc = float((clf(f).argmax(1) == labels).float().mean())
        return f.numpy(), acc

    with_adv, acc_adv = train(3.0)
    without, acc_plain = train(0.0)
    assert acc_adv > 0.75
    assert acc_plain > 0.75
    assert _source_decodability(without, source, y) > 0.9
    assert _source_decodability(with_adv, source, y) < 0.7


def test_source_adversary_runs_in_the_training_loop_and_stays_out_of_the_network(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.source_adversary through the real loop on real images: the log carries the
    adversary's loss beside its chance level, the kept weights are the network's alone, a
    resumed run restores the adversary, and settings it cannot honour are refused."""
    from dermsight.train.loop import DistInfo, check_distributed, train_model
    from dermsight.train.pipeline import build_net, make_datasets, prepare_data

    monkeypatch.setattr(adversary, "MIN_CELL", 1)  # 24 training images: tiny cells
    cfg = load_config(REPO / "configs" / "default.yaml",
                      [f"data.root={data_dir}", "data.limit=24", "train.epochs=2",
                       "train.batch_size=8", "input.size=64", "train.eval_batch_size=16",
                       "train.source_adversary=0.5", "train.mixup_alpha=0.4"])
    data = make_datasets(cfg, prepare_data(cfg), ("train", "val"))
    t = AdversaryTargets.from_labels(data["train"].labels, data["train"].sources,
                                     len(cfg.data.classes))
    assert t.cells.any(), "the tiny split should have a class seen in two sources"
    torch.manual_seed(0)
    net = build_net(cfg, MetaSpec())
    train_model(cfg, net, data["train"], data["val"], tmp_path, resume=False, info=DistInfo())
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    for r in log:
        assert math.isfinite(r["adversary_loss"])
        assert r["adversary_loss"] > 0
        assert r["adversary_chance_loss"] == pytest.approx(t.chance_loss)
    assert 0 < log[0]["adversary_coeff"] < log[1]["adversary_coeff"] <= 0.5
    kept = torch.load(tmp_path / "best.pt", weights_only=False)["model"]
    assert set(kept) == set(build_net(cfg, MetaSpec()).state_dict())
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert last["adversary"] is not None
    # resume after epoch 1 of 3: the adversary's weights come back from the checkpoint
    cfg3 = load_config(REPO / "configs" / "default.yaml",
                       [f"data.root={data_dir}", "data.limit=24", "train.epochs=3",
                        "train.batch_size=8", "input.size=64", "train.eval_batch_size=16",
                        "train.source_adversary=0.5"])
    net3 = build_net(cfg3, MetaSpec())
    restored: list[dict[str, Any]] = []
    real_load = SourceAdversary.load_state_dict
    monkeypatch.setattr(SourceAdversary, "load_state_dict",
                        lambda self, sd, *a, **k: (restored.append(sd),
                                                   real_load(self, sd, *a, **k))[1])
    train_model(cfg3, net3, data["train"], data["val"], tmp_path, resume=True, info=DistInfo())
    assert len(restored) == 1
    assert all(torch.equal(restored[0][k], v) for k, v in last["adversary"].items())
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    with pytest.raises(ConfigError, match="source_adversary"):
        load_config(REPO / "configs" / "default.yaml", ["train.source_adversary=-1"])
    with pytest.raises(ConfigError, match="source_adversary is not supported under torchrun"):
        check_distributed(cfg, DistInfo(rank=0, world=2))


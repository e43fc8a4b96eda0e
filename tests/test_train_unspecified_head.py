"""``model.unspecified_head`` (needs the [train] extra): UNK by its own sigmoid, so UNK images
never train the eight specific diagnoses; its ONNX export; the config check; and finalize's
malignant probability taken among the specific diagnoses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.preprocess import MetaSpec  # noqa: E402
from dermsight.records import Metadata  # noqa: E402
from dermsight.train.config import ConfigError, load_config  # noqa: E402
from dermsight.train.finalize.calibration import calibrate  # noqa: E402
from dermsight.train.finalize.scoring import Part  # noqa: E402
from dermsight.train.network import LesionNet, unspecified_log_probs  # noqa: E402

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
NINE = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def test_the_outputs_are_log_probabilities_of_specific_times_not_unk_and_unk() -> None:
    raw = torch.randn(16, 9, generator=torch.Generator().manual_seed(0)) * 4
    p = unspecified_log_probs(raw).exp()
    u = torch.sigmoid(raw[:, -1])
    specific = torch.softmax(raw[:, :-1], dim=1)
    torch.testing.assert_close(p.sum(1), torch.ones(16))
    torch.testing.assert_close(p[:, -1], u)
    torch.testing.assert_close(p[:, :-1], specific * (1 - u)[:, None])
    # softmax of the outputs (what serving and temperature scaling do) gives them back
    torch.testing.assert_close(torch.softmax(unspecified_log_probs(raw), 1), p)


def test_unk_images_do_not_train_the_specific_diagnoses() -> None:
    raw = torch.randn(4, 9, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    unk = torch.full((4,), 8)
    torch.nn.functional.cross_entropy(unspecified_log_probs(raw), unk).backward()
    assert raw.grad is not None
    # zero up to float rounding (cross-entropy re-normalises log-probabilities that sum to 1)
    assert raw.grad[:, :8].abs().max() < 1e-6
    assert torch.all(raw.grad[:, 8] < 0)  # pushes UNK's own score up
    raw.grad = None
    mel = torch.zeros(4, dtype=torch.long)
    torch.nn.functional.cross_entropy(unspecified_log_probs(raw), mel).backward()
    assert torch.all(raw.grad[:, 0] < 0)
    assert torch.all(raw.grad[:, 8] > 0)
    # a joint softmax, for contrast: a UNK label pushes every specific logit down
    raw.grad = None
    torch.nn.functional.cross_entropy(raw, unk).backward()
    assert torch.all(raw.grad[:, :8] > 0)


def _grads(net: LesionNet, label: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)  # the same dropout mask for every call
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    m = torch.randn(4, MetaSpec().dim, generator=torch.Generator().manual_seed(4))
    net.zero_grad()
    out = net.train()(x, m)  # log-probabilities: nll_loss, so no re-normalising rounding
    torch.nn.functional.nll_loss(out, torch.full((4,), label)).backward()
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in net.named_parameters()}


def test_a_detached_unk_head_learns_without_shaping_the_features() -> None:
    """``model.unspecified_detach``: a UNK image's loss trains the classifier's last row and
    nothing else; a specific diagnosis still trains the backbone, the metadata branch and (its
    "not UNK" part) UNK's row; and the network computes the same function as without it."""
    torch.manual_seed(0)
    plain = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                      unspecified_head=True)
    detached = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                         unspecified_head=True, unspecified_detach=True)
    detached.load_state_dict(plain.state_dict())
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    m = torch.zeros(3, MetaSpec().dim)
    with torch.no_grad():
        torch.testing.assert_close(detached.eval()(x, m), plain.eval()(x, m))
        torch.manual_seed(7)
        a = plain.train()(x, m)
        torch.manual_seed(7)
        torch.testing.assert_close(detached.train()(x, m), a)  # same scores while training

    unk_detached, unk_plain = _grads(detached, 8), _grads(plain, 8)
    stem = "backbone.conv_stem.weight"
    assert unk_plain[stem].abs().max() > 0  # without it, UNK images shape the features
    for name, g in unk_detached.items():
        if name.startswith(("backbone.", "meta.")):
            assert g.abs().max() == 0, name
    assert unk_detached["classifier.weight"][:8].abs().max() == 0
    assert unk_detached["classifier.weight"][8].abs().max() > 0
    torch.testing.assert_close(unk_detached["classifier.weight"][8],
                               unk_plain["classifier.weight"][8])

    mel_detached, mel_plain = _grads(detached, 0), _grads(plain, 0)
    assert mel_detached[stem].abs().max() > 0
    assert mel_detached["meta.0.weight"].abs().max() > 0
    assert mel_detached["classifier.weight"][8].abs().max() > 0  # "not UNK" trains UNK's row
    # the backbone gets only the specific diagnoses' part of the loss
    assert not torch.allclose(mel_detached[stem], mel_plain[stem])


def test_a_partly_detached_unk_head_passes_that_share_of_its_gradient() -> None:
    """``model.unspecified_detach: 0.9``: a UNK image's loss reaches the backbone and the metadata
    branch at a tenth of its full strength, trains UNK's row as fully, and the network computes
    the same function."""
    torch.manual_seed(0)
    plain = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                      unspecified_head=True)
    part = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                     unspecified_head=True, unspecified_detach=0.9)
    part.load_state_dict(plain.state_dict())
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    m = torch.zeros(3, MetaSpec().dim)
    with torch.no_grad():
        torch.manual_seed(7)
        a = plain.train()(x, m)
        torch.manual_seed(7)
        torch.testing.assert_close(part.train()(x, m), a)

    unk_part, unk_plain = _grads(part, 8), _grads(plain, 8)
    for name in ("backbone.conv_stem.weight", "meta.0.weight"):
        assert unk_plain[name].abs().max() > 0
        want = 0.1 * unk_plain[name]  # float rounding through BatchNorm: compare by norm
        assert float((unk_part[name] - want).norm() / want.norm()) < 1e-3, name
    torch.testing.assert_close(unk_part["classifier.weight"][8], unk_plain["classifier.weight"][8])


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "half"])
def test_the_detached_share_must_be_between_0_and_1(bad: str) -> None:
    cfg = REPO / "configs" / "default.yaml"
    assert load_config(cfg, ["model.unspecified_detach=0.9"]).model.unspecified_detach == 0.9
    with pytest.raises(ConfigError, match=r"unspecified_detach must be true, false or a number"):
        load_config(cfg, [f"model.unspecified_detach={bad}"])
    with pytest.raises(ConfigError, match=r"unspecified_detach must be in \[0, 1\]"):
        LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                  unspecified_head=True, unspecified_detach=float(bad) if bad != "half" else 2.0)


def test_a_detached_unk_head_needs_the_unk_head() -> None:
    cfg = REPO / "configs" / "default.yaml"
    assert load_config(cfg, ["model.unspecified_detach=true"]).model.unspecified_detach
    with pytest.raises(ConfigError, match=r"unspecified_detach needs model\.unspecified_head"):
        load_config(cfg, ["model.unspecified_detach=true", "model.unspecified_head=false",
                          "data.classes=[MEL,NV,BCC,AK,BKL,DF,VASC,SCC]",
                          "calibration.margin_classes=[]"])


def test_the_onnx_export_carries_the_head() -> None:
    from dermsight.train.export import export_onnx, parity

    torch.manual_seed(0)
    net = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                    unspecified_head=True).eval()
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    m = np.zeros((3, MetaSpec().dim), np.float32)
    data = export_onnx(net, 64)
    assert parity(net, data, x, m) < 1e-4
    from dermsight.onnxsession import ort_session

    logits = ort_session(data, threads=1).run(["logits"], {"image": x, "meta": m})[0]
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, rtol=1e-5)  # log-probabilities


def test_the_served_head_stays_finite_where_the_unk_score_is_extreme() -> None:
    """ONNX Runtime's Sigmoid returns exactly 0 below about -17, so a graph computing
    log(sigmoid(z)) served -inf for a confident "not UNK" (and for a confident UNK, on the other
    classes), and finalize's parity check then stopped a finished training. With UNK's raw score
    set to -40 ... +40, the exported log-probabilities are finite and match torch's."""
    from dermsight.onnxsession import ort_session
    from dermsight.train.export import export_onnx
    from dermsight.train.finalize.scoring import within_parity

    torch.manual_seed(0)
    net = LesionNet("tf_efficientnet_lite0", 9, MetaSpec().dim, pretrained=False,
                    unspecified_head=True).eval()
    z = torch.tensor([-40.0, -25.0, -18.0, -10.0, 0.0, 10.0, 18.0, 25.0, 40.0])
    x = np.zeros((len(z), 3, 64, 64), np.float32)
    m = np.zeros((len(z), MetaSpec().dim), np.float32)
    with torch.no_grad():  # every image scores alike; only UNK's bias varies, one image each
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.linspace(-1.0, 1.0, 9))
    served, ref = [], []
    for zi in z:
        with torch.no_grad():
            net.classifier.bias[-1] = zi
            ref.append(net(torch.from_numpy(x[:1]), torch.from_numpy(m[:1])).numpy())
        session = ort_session(export_onnx(net, 64), threads=1)
        served.append(session.run(["logits"], {"image": x[:1], "meta": m[:1]})[0])
    onnx_logits, torch_logits = np.concatenate(served), np.concatenate(ref)
    assert np.isfinite(torch_logits).all()
    assert np.isfinite(onnx_logits).all(), onnx_logits
    assert within_parity(onnx_logits, torch_logits)
    assert onnx_logits[0, -1] == pytest.approx(-40.0, abs=1e-3)  # log sigmoid(-40)
    assert onnx_logits[-1, 0] == pytest.approx(torch_logits[-1, 0], abs=1e-3)


def test_the_config_needs_unk_as_the_last_class() -> None:
    cfg = REPO / "configs" / "v2.4.yaml"
    assert load_config(cfg).model.unspecified_head
    with pytest.raises(ConfigError, match=r"UNK as the last of data\.classes"):
        load_config(cfg, ["data.classes=[UNK, MEL, NV, BCC, AK, BKL, DF, VASC, SCC]"])
    with pytest.raises(ConfigError, match=r"UNK as the last of data\.classes"):
        load_config(cfg, ["data.classes=[MEL, NV, BCC, AK, BKL, DF, VASC, SCC]",
                          "calibration.margin_classes=[]"])


def _val_part(n: int = 3000, seed: int = 0) -> Part:
    rng = np.random.default_rng(seed)
    raw = torch.as_tensor(rng.normal(size=(n, 9)) * 2.5, dtype=torch.float32)
    logits = unspecified_log_probs(raw).numpy().astype(np.float64)
    p = np.exp(logits)
    labels = np.array([rng.choice(9, p=row / row.sum()) for row in p])
    return Part(pd.DataFrame({"source": ["s"] * n}), [], [Metadata()] * n, labels, logits=logits)


def test_finalize_takes_the_malignant_probability_among_the_specific_diagnoses() -> None:
    cfg = load_config(REPO / "configs" / "v2.4.yaml")
    val = _val_part()
    calib = calibrate(cfg, val)
    assert calib.excluded == ("UNK",)
    p = calib.probs(val.logits)
    share = p[:, [0, 2, 7]].sum(1) / p[:, :8].sum(1)
    np.testing.assert_allclose(calib.malignant_probability(val.logits), share)
    positive = calib.is_malignant(val.labels)
    assert (share[positive] >= calib.refer).mean() >= cfg.calibration.refer_sensitivity
    # the joint-softmax configs keep the plain sum
    joint = calibrate(load_config(REPO / "configs" / "v2.3.yaml"), val)
    assert joint.excluded == ()
    np.testing.assert_allclose(joint.malignant_probability(val.logits),
                               joint.probs(val.logits)[:, [0, 2, 7]].sum(1))

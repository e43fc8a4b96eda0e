"""Training measures against the source shortcut and other cameras' looks (needs the [train]
extra): source-balanced loss weights (v2.1), cross-source Fourier style swaps (v2.1), random
convolutions (v2.14), the zoom-out onto a field of skin (v2.15) and the lossy re-save of the whole
image (compressed uploads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.io.decode import decode_image  # noqa: E402
from dermsight.preprocess import InputSpec, MetaSpec, resize_rgb  # noqa: E402
from dermsight.records import Metadata  # noqa: E402
from dermsight.train.augment import (  # noqa: E402
    Augment,
    dermoscopy_effects,
    random_convolution,
    resave_lossy,
    swap_style,
    zoom_out_onto_skin,
)
from dermsight.train.config import ConfigError, load_config  # noqa: E402
from dermsight.train.data import LesionDataset, TrainingDraws  # noqa: E402
from dermsight.train.loop import (  # noqa: E402
    source_balance_weights,
    specific_weighted_ce,
    weighted_ce,
)
from dermsight.train.network import unspecified_log_probs  # noqa: E402

pytestmark = pytest.mark.train


def test_source_balance_spreads_each_class_evenly_over_its_sources() -> None:
    labels = np.array([0] * 90 + [0] * 10 + [1] * 30 + [2] * 5 + [2] * 45)
    sources = np.array(["a"] * 90 + ["b"] * 10 + ["a"] * 30 + ["a"] * 5 + ["c"] * 45)
    w = source_balance_weights(labels, sources, 1.0)
    for c in (0, 1, 2):  # the class weights stay as they were: mean 1 inside each class
        assert w[labels == c].mean() == pytest.approx(1.0)
    # power 1: each (source, class) cell of a class carries the same total weight
    assert w[:90].sum() == pytest.approx(w[90:100].sum())
    assert w[130:135].sum() == pytest.approx(w[135:].sum())
    assert np.all(w[labels == 1] == 1.0)  # one source: nothing to balance
    half = source_balance_weights(labels, sources, 0.5)
    assert 1 < half[90] / half[0] < w[90] / w[0]  # power 0.5: part of the way
    assert np.all(source_balance_weights(labels, sources, 0.0) == 1.0)


def test_weighted_ce_matches_torch_and_a_weight_of_two_is_a_duplicate() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 0])
    cw = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ref = torch.nn.CrossEntropyLoss(weight=cw)(logits, y)
    assert weighted_ce(logits, y, torch.ones(6), cw, 0.0) == pytest.approx(float(ref), rel=1e-6)
    sw = torch.tensor([2.0, 1, 1, 1, 1, 1])
    dup = torch.nn.CrossEntropyLoss(weight=cw)(torch.cat([logits, logits[:1]]),
                                               torch.cat([y, y[:1]]))
    assert weighted_ce(logits, y, sw, cw, 0.0) == pytest.approx(float(dup), rel=1e-6)
    assert weighted_ce(logits, y, torch.ones(6), None, 0.1) == pytest.approx(
        float(torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, y)), rel=1e-6)


def _pair(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    spec = InputSpec(size=128)
    ham = sorted((data_dir / "images").glob("ISIC_00[2-3]*.jpg"))[0]
    other = sorted((data_dir.parent / "isic2020-sample" / "images").glob("*.jpg"))[3]
    return (resize_rgb(decode_image(ham), spec), resize_rgb(decode_image(other), spec))


def test_style_swap_takes_the_donors_look_and_keeps_the_structure(data_dir: Path) -> None:
    a, b = _pair(data_dir)
    assert np.abs(swap_style(a, a, 0.02, 1.0).astype(int) - a).max() <= 1  # own look: no change
    out = swap_style(a, b, 0.02, 1.0)
    assert out.shape == a.shape
    assert out.dtype == np.uint8
    mean = lambda x: x.reshape(-1, 3).astype(float).mean(0)  # noqa: E731
    # the mean colour (the zero frequency) is the donor's ...
    assert np.abs(mean(out) - mean(b)).max() < 0.25 * np.abs(mean(a) - mean(b)).max() + 2
    # ... while the fine structure (high frequencies) is the image's own
    def detail(x: np.ndarray) -> np.ndarray:
        g = x.astype(float).mean(2)
        return g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    assert np.corrcoef(detail(out).ravel(), detail(a).ravel())[0, 1] > 0.9
    assert np.corrcoef(detail(out).ravel(), detail(b).ravel())[0, 1] < 0.3
    halfway = swap_style(a, b, 0.02, 0.5)
    assert np.abs(mean(halfway) - (mean(a) + mean(b)) / 2).max() < 3


def test_random_convolution_changes_the_look_and_keeps_the_shapes(data_dir: Path) -> None:
    a, _ = _pair(data_dir)
    flat = a.reshape(-1, 3).astype(float)
    # a 1x1 kernel only mixes colours: every output pixel is one affine map of its own RGB
    out = random_convolution(a, np.random.default_rng(3), sizes=(1,))
    assert out.shape == a.shape
    assert out.dtype == np.uint8
    y = out.reshape(-1, 3).astype(float)
    kept = ((y > 0) & (y < 255)).all(1)  # pixels the clip to 0..255 left alone
    x = np.c_[flat, np.ones(len(flat))][kept]
    coef, *_ = np.linalg.lstsq(x, y[kept], rcond=None)
    assert np.abs(x @ coef - y[kept]).max() <= 1.0  # rounding to uint8 only
    assert np.abs(out.astype(float) - a).mean() > 3  # ... and not the identity
    # a 7x7 kernel: each channel keeps its mean, and the coarse layout (the lesion) stays
    for seed in range(5):
        big = random_convolution(a, np.random.default_rng(seed), sizes=(7,))
        assert np.abs(big.reshape(-1, 3).mean(0) - flat.mean(0)).max() < 6
        coarse = lambda z: z.astype(float).mean(2).reshape(16, 8, 16, 8).mean((1, 3))  # noqa: E731
        assert abs(np.corrcoef(coarse(big).ravel(), coarse(a).ravel())[0, 1]) > 0.5
    # in Augment, with randconv=1 every image gets one (after the geometry and the jitter)
    spec = InputSpec(size=128)
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    always = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0, randconv=1.0)
    for seed in range(3):
        plain = neutral(a, spec, np.random.default_rng(seed))
        assert np.abs(always(a, spec, np.random.default_rng(seed)).astype(float) - plain
                      ).mean() > 3


def test_zoom_out_onto_skin_shows_the_lesion_smaller_among_its_own_skin(data_dir: Path
                                                                       ) -> None:
    a, _ = _pair(data_dir)
    s = a.shape[0]
    b = s // 10
    ring = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3),
                           a[b:-b, :b].reshape(-1, 3), a[b:-b, -b:].reshape(-1, 3)]).astype(float)
    grey = lambda z: z.astype(float).mean(2)  # noqa: E731
    for seed in range(5):
        out = zoom_out_onto_skin(a, np.random.default_rng(seed), shrink=(0.5, 0.5))
        assert out.shape == a.shape
        assert out.dtype == np.uint8
        # the whole image is in there, at half the side: find it by correlation
        n = s // 2
        small = np.asarray(Image.fromarray(a).resize((n, n), Image.Resampling.BILINEAR))
        best = max((np.corrcoef(grey(out[t:t + n, u:u + n])[6:-6, 6:-6].ravel(),
                                grey(small)[6:-6, 6:-6].ravel())[0, 1], t, u)
                   for t in range(0, s - n + 1, 2) for u in range(0, s - n + 1, 2))
        assert best[0] > 0.98
        # outside it: skin of the image's own ring colour, no black border, no copy of the lesion
        outside = np.ones((s, s), bool)
        outside[best[1]:best[1] + n, best[2]:best[2] + n] = False
        rest = out[outside].astype(float)
        assert np.abs(rest.mean(0) - ring.mean(0)).max() < 12
        assert rest.std(0).max() < ring.std(0).max() + 8
        assert grey(out)[outside].min() > 0.25 * grey(a).mean()
    # in Augment, with wide_field=1 every image gets it; at 0 no random number is drawn for it:
    # the dermoscopy effects get the very draws that follow the geometry and the jitter
    spec = InputSpec(size=128)
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    off = Augment(wide_field=0.0, dermoscopy=True)
    always = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0, wide_field=1.0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        by_hand = dermoscopy_effects(off.colour(off.geometry(a, spec, rng), rng), rng)
        assert np.array_equal(off(a, spec, np.random.default_rng(seed)), by_hand)
        plain = neutral(a, spec, np.random.default_rng(seed))
        assert np.abs(always(a, spec, np.random.default_rng(seed)).astype(float) - plain
                      ).mean() > 5


def test_resave_lossy_compresses_the_whole_image_and_is_drawn_only_when_asked(
        data_dir: Path) -> None:
    a, _ = _pair(data_dir)
    formats = set()
    for seed in range(12):
        out = resave_lossy(a, np.random.default_rng(seed))
        assert out.shape == a.shape
        assert out.dtype == np.uint8
        diff = np.abs(out.astype(float) - a)
        assert 0.3 < diff.mean() < 12  # compressed, not another picture
        # the same draw again gives the same bytes: what was saved is the rng's alone
        rng = np.random.default_rng(seed)
        fmt = "JPEG" if rng.random() < 0.5 else "WEBP"
        formats.add(fmt)
        assert np.array_equal(out, resave_lossy(a, np.random.default_rng(seed)))
    assert formats == {"JPEG", "WEBP"}
    # at resave=0 no random number is drawn: the same draws as an Augment without the field
    spec = InputSpec(size=96)
    base, off = Augment(dermoscopy=True), Augment(dermoscopy=True, resave=0.0)
    on = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0, resave=1.0)
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    for seed in range(3):
        assert np.array_equal(base(a, spec, np.random.default_rng(seed)),
                              off(a, spec, np.random.default_rng(seed)))
        rng = np.random.default_rng(seed)
        assert rng.random() < 1.0  # the resave draw, then the re-saved image's own draws
        by_hand = neutral(resave_lossy(a, rng), spec, rng)
        assert np.array_equal(on(a, spec, np.random.default_rng(seed)), by_hand)


def test_dataset_style_mix_uses_donors_from_other_sources_only(data_dir: Path) -> None:
    a, b = _pair(data_dir)
    spec = InputSpec(size=64)
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    imgs, metas = [a, a.copy(), b], [Metadata()] * 3
    sources = np.array(["ham", "ham", "2020"])
    plain = LesionDataset(imgs, metas, np.zeros(3, int), spec, MetaSpec(),
                          draws=TrainingDraws(neutral, seed=1), sources=sources)
    mixing = TrainingDraws(neutral, seed=1, style_mix=1.0)
    mixed = LesionDataset(imgs, metas, np.zeros(3, int), spec, MetaSpec(), draws=mixing,
                          sources=sources)
    rng = np.random.default_rng(0)
    for _ in range(10):  # image 0's only other-source donor is image 2
        assert np.array_equal(mixed.donor(0, rng), resize_rgb(b, spec))
    assert not np.allclose(mixed[0][0].numpy(), plain[0][0].numpy())
    assert mixed[0][3] == 1.0  # default sample weight
    weighted = LesionDataset(imgs, metas, np.zeros(3, int), spec, MetaSpec(),
                             weights=np.array([0.5, 0.5, 2.0]))
    assert [weighted[i][3] for i in range(3)] == [0.5, 0.5, 2.0]
    alone = LesionDataset(imgs[:2], metas[:2], np.zeros(2, int), spec, MetaSpec(),
                          draws=mixing, sources=np.array(["ham", "ham"]))
    assert alone.donor(0, rng) is None  # no other source: the image keeps its look
    assert np.allclose(alone[0][0].numpy(), plain[0][0].numpy())


def test_specific_scope_weights_only_the_specific_diagnoses() -> None:
    """``source_balance_scope: specific``: with weights 1 the loss is the plain weighted
    cross-entropy; a sample weight changes only the specific-diagnosis part - the UNK score's
    gradient ("unspecified or not") is the same whatever the weights."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(6, 5, generator=g, requires_grad=True)
    y, cw = torch.tensor([0, 1, 4, 3, 4, 2]), torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    logp = unspecified_log_probs(raw).detach()
    ones = torch.ones(6)
    assert float(specific_weighted_ce(logp, y, ones, cw)) == pytest.approx(
        float(weighted_ce(logp, y, ones, cw, 0.0)), rel=1e-6)
    sw = torch.tensor([3.0, 0.2, 5.0, 1.0, 0.1, 2.0])
    grads = []
    for w in (ones, sw):
        raw.grad = None
        specific_weighted_ce(unspecified_log_probs(raw), y, w, cw).backward()
        grads.append(raw.grad.clone())
    # the UNK column (last raw score) feels "unspecified or not" alone: unchanged by weights
    assert torch.allclose(grads[0][:, -1], grads[1][:, -1])
    # the specific diagnoses of a weighted image move; UNK images' specific scores do not
    assert not torch.allclose(grads[0][0, :4], grads[1][0, :4])
    assert torch.allclose(grads[1][2, :4], torch.zeros(4))
    assert torch.allclose(grads[1][4, :4], torch.zeros(4))
    # whereas the whole-loss weights (scope "all") do move the UNK score's gradient
    raw.grad = None
    weighted_ce(unspecified_log_probs(raw), y, sw, cw, 0.0).backward()
    assert not torch.allclose(raw.grad[:, -1], grads[0][:, -1])


@pytest.mark.parametrize("bad", [["train.source_balance_scope=some"],
                                 ["train.source_balance_scope=specific",
                                  "train.source_balance=0"],
                                 ["train.source_balance_scope=specific",
                                  "model.unspecified_head=false"],
                                 ["train.source_balance_scope=specific",
                                  "train.mixup_alpha=0.2"]])
def test_specific_scope_needs_its_setting(bad: list[str]) -> None:
    cfg = Path(__file__).parents[1] / "configs" / "default.yaml"
    load_config(cfg, ["train.source_balance=0.5", "train.source_balance_scope=specific"])
    with pytest.raises(ConfigError, match="source_balance_scope"):
        load_config(cfg, ["train.source_balance=0.5", *bad])


@pytest.mark.parametrize("bad", ["train.style_mix=1.5", "train.style_mix_beta=0",
                                 "input.crop_fraction=0.2", "input.crop_fraction=1.5",
                                 "train.source_balance=-1", "train.randconv_p=1.5",
                                 "train.randconv_p=-0.1", "train.wide_field_p=1.5",
                                 "train.wide_field_p=-0.1", "train.resave_p=1.5",
                                 "train.resave_p=-0.1"])
def test_bad_shortcut_settings_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        load_config(Path(__file__).parents[1] / "configs" / "v2.1.yaml", [bad])


def test_training_crops_inside_the_served_centre(data_dir: Path) -> None:
    """With ``crop_fraction`` < 1 training never sees more than serving does: with the random
    crop and the jitter off, the training input is a flip/rotation of what serving feeds."""
    from dermsight.preprocess import preprocess

    img = decode_image(sorted((data_dir / "images").glob("*.jpg"))[5])[:, 30:]  # not square
    spec = InputSpec(size=64, crop_fraction=0.7)
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    ds = LesionDataset([img], [Metadata()], np.zeros(1, int), spec, MetaSpec(),
                       draws=TrainingDraws(neutral))
    fed = ds[0][0].numpy()
    served = preprocess(img, spec)
    variants = [np.rot90(served, k, axes=(1, 2)) for k in range(4)]
    variants += [v[:, :, ::-1] for v in variants]
    assert min(np.abs(fed - v).max() for v in variants) < 1e-5
    assert not np.allclose(served, preprocess(img, InputSpec(size=64)))

"""Similar cases: the numpy kNN, the shipped reference set, retrieval metrics and the API."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsight import Dermsight, similar
from dermsight.bundle import BundleError, covered_files, default_bundle_path, load_bundle
from dermsight.evaluate.retrieval import knn_vote, retrieval_metrics
from dermsight.io.decode import decode_image
from dermsight.reference_build import (
    BATCH,
    DATASETS,
    ISIC2020,
    dataset_of,
    embed_rows,
    load_split,
    trained_folders,
)
from dermsight.splits import split_sha256

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "configs" / "default-split.csv"


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def reference(model: Dermsight) -> similar.ReferenceSet:
    ref = model.reference
    assert ref is not None, "the shipped bundle has no reference set"
    return ref


@pytest.fixture(scope="module")
def split() -> pd.DataFrame:
    return pd.read_csv(SPLIT, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def folders(data_dir: Path) -> list[Path]:
    """isic-subset and every other shared data folder beside it (isic2020-sample): a bundle
    trained on several folders (the nine-class one) has train / test images in each."""
    others = sorted(f for f in data_dir.parent.iterdir()
                    if f != data_dir and (f / "metadata.csv").exists())
    return [data_dir, *others]


@pytest.fixture(scope="module")
def card_json() -> dict[str, object]:
    doc: dict[str, object] = json.loads(
        (default_bundle_path() / "card.json").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def rows(folders: list[Path], card_json: dict[str, object]) -> pd.DataFrame:
    """The bundle's split joined to the data folders (``path``: the image file), by image id."""
    return load_split(folders, SPLIT, card_json).set_index("image_id")


# --- the kNN ---------------------------------------------------------------------------------


def test_knn_on_a_toy_bank() -> None:
    bank = similar.normalize(np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [-1, 0, 0]],
                                      np.float32))
    idx, sims = similar.knn(np.array([10.0, 1.0, 0.0]), bank, 3)  # scale does not matter
    assert idx.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(sims[0], [10 / np.sqrt(101), 11 / np.sqrt(202), 1 / np.sqrt(101)],
                               rtol=1e-6)
    # the exact opposite is the least similar; k above the bank size gives the whole bank
    idx, sims = similar.knn(np.array([[1.0, 0, 0]]), bank, 99)
    assert idx.shape == (1, 5)
    assert idx[0, -1] == 4
    assert sims[0, -1] == pytest.approx(-1.0)
    # ties: the lower bank index first
    idx, _ = similar.knn(np.array([0.0, 0, 1]), np.vstack([bank, bank[3:4]]), 2)
    assert idx.tolist() == [[3, 5]]
    # float16 storage gives the same order
    assert similar.knn(np.array([10.0, 1.0, 0]), bank.astype(np.float16), 3)[0].tolist() == \
        [[0, 2, 1]]
    with pytest.raises(ValueError, match="k must be"):
        similar.knn(np.ones(3), bank, 0)
    with pytest.raises(ValueError, match="does not fit"):
        similar.knn(np.ones(4), bank, 1)


def test_knn_agrees_with_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    bank = similar.normalize(rng.standard_normal((300, 16)))
    q = rng.standard_normal((7, 16))
    idx, sims = similar.knn(q, bank, 10)
    full = similar.normalize(q) @ bank.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :10], rtol=1e-5)


# --- the shipped reference set ---------------------------------------------------------------


def test_reference_set_is_in_the_manifest_and_verified(tmp_path: Path) -> None:
    root = default_bundle_path()
    names = covered_files(root)
    assert similar.REFERENCE_NPZ in names
    assert similar.REFERENCE_CREDITS in names
    card = load_bundle().card  # verifies every covered file
    assert similar.REFERENCE_NPZ in card.files
    size = sum((root / n).stat().st_size for n in names if n.startswith(similar.REFERENCE_DIR))
    assert size < 15e6
    # a changed reference file is refused
    copy = tmp_path / "bundle"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("model.onnx"))
    (copy / "model.onnx").symlink_to(root / "model.onnx")
    with open(copy / similar.REFERENCE_NPZ, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"reference\.npz"):
        load_bundle(copy)


def test_reference_holds_training_images_of_every_class_with_licences(
        reference: similar.ReferenceSet, model: Dermsight, split: pd.DataFrame) -> None:
    which = dict(zip(split["image_id"], split["split"], strict=True))
    assert {which.get(i) for i in reference.image_id} == {"train"}  # never a test/val image
    assert set(reference.diagnosis) == set(model.classes)
    truth = dict(zip(split["image_id"], split["diagnosis"], strict=True))
    assert all(truth[i] == d for i, d in zip(reference.image_id, reference.diagnosis,
                                             strict=True))
    np.testing.assert_allclose(np.linalg.norm(reference.embedding, axis=1), 1.0, atol=2e-3)
    licences = {reference.case(r, 1.0).licence for r in range(len(reference))}
    assert licences <= {d["licence"] for d in DATASETS}
    for image_id in reference.image_id[:: max(1, len(reference) // 20)]:
        thumb = reference.thumbnail(str(image_id))
        assert thumb is not None
        im = Image.open(io.BytesIO(thumb))
        assert im.format == "WEBP"
        assert max(im.size) <= 96
    assert reference.thumbnail("ISIC_nope") is None


def test_reference_embeddings_are_the_models_own(
        reference: similar.ReferenceSet, model: Dermsight, rows: pd.DataFrame) -> None:
    """A reference image, predicted through the facade, finds itself first (cosine ~ 1)."""
    for row in (0, len(reference) // 2, len(reference) - 1):
        image_id = str(reference.image_id[row])
        pred = model.predict(rows.loc[image_id, "path"], heatmap=False)
        assert pred.embedding is not None
        top = reference.nearest(pred.embedding, 5)
        assert top[0].image_id == image_id
        assert top[0].similarity > 0.999
        assert [c.similarity for c in top] == sorted((c.similarity for c in top), reverse=True)
        assert model.similar(pred, 5) == top if pred.assessable else model.similar(pred) == []


def test_embed_rows_reproduces_the_shipped_reference(
        reference: similar.ReferenceSet, model: Dermsight, rows: pd.DataFrame) -> None:
    """The build's batched embedding (34 rows: more than one batch) gives the shipped bank's
    vectors, one logit row and one WebP thumbnail per row; no thumbnails when not asked."""
    n = BATCH + 2
    picked = rows.loc[[str(i) for i in reference.image_id[:n]]].reset_index()
    emb, logits, thumbs = embed_rows(model, picked, thumbs=True)
    assert emb.shape == (n, reference.embedding.shape[1])
    assert logits.shape == (n, len(model.classes))
    np.testing.assert_allclose(similar.normalize(emb), reference.embedding[:n].astype(np.float32),
                               atol=2e-3)
    assert len(thumbs) == n
    assert all(Image.open(io.BytesIO(t)).format == "WEBP" for t in thumbs)
    emb2, logits2, none = embed_rows(model, picked.iloc[:3], thumbs=False)
    assert none == []
    np.testing.assert_allclose(emb2, emb[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits2, logits[:3], rtol=1e-4, atol=1e-5)


def test_refused_result_has_no_similar_cases(model: Dermsight) -> None:
    pred = model.predict(np.full((300, 300, 3), 128, np.uint8), heatmap=False)
    assert not pred.assessable
    assert model.similar(pred) == []


# --- retrieval metrics -------------------------------------------------------------------------


def test_knn_vote_majority_then_similarity() -> None:
    labels = np.array([[0, 1, 1, 2, 0], [2, 2, 0, 0, 1]])
    sims = np.array([[0.9, 0.5, 0.5, 0.4, 0.3], [0.5, 0.4, 0.8, 0.2, 0.1]])
    # row 0: class 1 has 2 votes like class 0, but 1.0 summed vs 1.2 -> 0;
    # row 1: 2 and 0 tie on votes, 0.9 vs 1.0 -> 0
    assert knn_vote(labels, sims, 3).tolist() == [0, 0]
    assert knn_vote(np.array([[2, 2, 1]]), np.array([[0.1, 0.1, 0.9]]), 3).tolist() == [2]


def test_retrieval_metrics_on_real_test_images(
        reference: similar.ReferenceSet, model: Dermsight, rows: pd.DataFrame,
        split: pd.DataFrame) -> None:
    """Two TEST images per class against the shipped set: the per-class precision@5 and the
    vote equal a by-hand count over a full sort of the cosines."""
    test = split[split["split"] == "test"].sort_values("image_id").groupby("diagnosis").head(2)
    images = [decode_image(rows.loc[i, "path"]) for i in test["image_id"]]
    preds = model.predict_batch(images)
    emb = np.stack([p.embedding for p in preds if p.embedding is not None])
    labels = list(test["diagnosis"])
    m = retrieval_metrics(emb, labels, reference.embedding, list(reference.diagnosis),
                          model.classes, k=5, classifier_labels=[p.prediction for p in preds])
    order = np.argsort(-(similar.normalize(emb) @ reference.embedding.T), axis=1)[:, :5]
    hits = [float(np.mean(reference.diagnosis[o] == y)) for o, y in zip(order, labels,
                                                                      strict=True)]
    for code in model.classes:
        mine = [h for h, y in zip(hits, labels, strict=True) if y == code]
        row = m["precision_at_k"]["per_class"][code]
        assert row["n_queries"] == len(mine) == 2
        assert row["precision_at_k"] == pytest.approx(np.mean(mine))
        assert row["n_reference"] == int(np.sum(reference.diagnosis == code))
    assert m["precision_at_k"]["mean_over_queries"] == pytest.approx(np.mean(hits))
    correct = sum(p.prediction == y for p, y in zip(preds, labels, strict=True))
    assert m["classifier"]["correct"] == correct
    assert m["classifier"]["n"] == len(labels)
    # the vote's accuracy is a count of its own, within 0..n
    assert 0 <= m["knn_vote"]["correct"] <= len(labels)
    # a reference image as its own query (k = 1) always finds its class
    own = retrieval_metrics(reference.embedding[:50], list(reference.diagnosis[:50]),
                            reference.embedding, list(reference.diagnosis), model.classes, k=1)
    assert own["precision_at_k"]["mean_over_queries"] == 1.0
    assert own["knn_vote"]["accuracy"] == 1.0


def test_card_records_retrieval_on_test(model: Dermsight) -> None:
    r = model.card.extra["retrieval"]
    test = r["test"]
    assert test["k"] == 5
    assert test["n_queries"] == model.card.extra["data"]["by_split"]["test"][
        "n"]
    assert set(test["precision_at_k"]["per_class"]) == set(model.classes)
    assert r["reference"]["n_images"] == len(model.reference or [])
    assert test["classifier"]["n"] == test["knn_vote"]["n"] == test["n_queries"]


def test_build_refuses_a_split_that_is_not_the_bundles(
        tmp_path: Path, folders: list[Path], split: pd.DataFrame,
        card_json: dict[str, object]) -> None:
    card = card_json
    moved = split.copy()
    first_test = moved.index[moved["split"] == "test"][0]
    moved.loc[first_test, "split"] = "train"  # a test image moved into train
    path = tmp_path / "split.csv"
    moved.to_csv(path, index=False)
    with pytest.raises(BundleError, match="not this bundle's split"):
        load_split(folders, path, card)
    assert len(load_split(folders, SPLIT, card)) == len(split)


def test_build_refuses_data_folders_that_miss_split_images(
        tmp_path: Path, folders: list[Path], split: pd.DataFrame) -> None:
    """A split whose train / test images are not all in the given folders (a bundle trained on
    two folders, built with one --data) is refused instead of silently measured on a part."""
    extra = pd.DataFrame([{"image_id": "ISIC_9999999", "diagnosis": "UNK", "split": "train"}])
    grown = pd.concat([split, extra], ignore_index=True)
    path = tmp_path / "split.csv"
    grown.to_csv(path, index=False)
    card = {"data": {"split_sha256": {
        name: split_sha256(grown.loc[grown["split"] == name, "image_id"])
        for name in ("train", "test")}}}
    with pytest.raises(BundleError, match=r"1 train/test images .*ISIC_9999999.* none of the data"):
        load_split(folders, path, card)


def test_build_defaults_to_the_folders_the_card_was_trained_on(tmp_path: Path) -> None:
    """Without --data the build takes the folders the card's training config names (both for
    the nine-class model), so the default split is never measured on half of its folders."""
    card = json.loads((default_bundle_path() / "card.json").read_text(encoding="utf-8"))
    named = card["training"]["config"]["data"]["root"]
    assert trained_folders(default_bundle_path()) == [
        Path(r) for r in ([named] if isinstance(named, str) else named)]
    for root, want in (("../a", [Path("../a")]), (["../a", "../b"], [Path("../a"), Path("../b")]),
                       (None, [])):
        (tmp_path / "card.json").write_text(json.dumps(
            {"training": {"config": {"data": {"root": root}}}}), encoding="utf-8")
        assert trained_folders(tmp_path) == want
    (tmp_path / "card.json").write_text("{not json", encoding="utf-8")
    assert trained_folders(tmp_path) == []
    assert trained_folders(tmp_path / "nowhere") == []


def test_isic2020_images_have_a_known_licence(folders: list[Path]) -> None:
    """The nine-class model's UNK images (isic2020-sample only) can enter a reference set."""
    sample = next((f for f in folders if f.name == "isic2020-sample"), None)
    if sample is None:
        pytest.skip("isic2020-sample not found beside isic-subset")
    md = pd.read_csv(sample / "metadata.csv", dtype=str, keep_default_na=False)
    row = md[md["diagnosis"] == "UNK"].iloc[0]
    index = dataset_of(row)
    assert index is not None
    assert DATASETS[index] is ISIC2020
    # a reference set stores each image's row of DATASETS: the earlier rows keep their places
    assert [d["name"] for d in DATASETS][:2] == ["ISIC 2017", "HAM10000"]


def test_reference_build_cli_names_a_missing_input(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    bundle = str(default_bundle_path())
    assert run_guarded(app, ["reference", "build", bundle, "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: not found: {tmp_path / 'metadata.csv'}"
    nowhere = tmp_path / "split.csv"
    assert run_guarded(app, ["reference", "build", bundle, "--data", str(data_dir),
                             "--split", str(nowhere)]) == 2
    assert capsys.readouterr().err.strip() == f"error: not found: {nowhere}"


# --- the API -------------------------------------------------------------------------------------


def test_api_returns_similar_cases_with_working_thumbnails(tmp_path: Path, rows: pd.DataFrame,
                                                           split: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    from dermsight.web.app import create_app
    from dermsight.web.settings import Settings

    image_id = split.loc[split["split"] == "test", "image_id"].sort_values().iloc[0]
    jpeg = Path(rows.loc[image_id, "path"]).read_bytes()
    grey = io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(grey, format="PNG")
    app = create_app(Settings(static_dir=tmp_path / "no-ui"))
    with TestClient(app) as c:
        r = c.post("/api/v1/predict?heatmap=false", files={"image": ("a.jpg", jpeg, "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["risk"] != "cannot_assess"
        cases = body["similar"]
        assert len(cases) == 5
        assert [s["similarity"] for s in cases] == sorted((s["similarity"] for s in cases),
                                                          reverse=True)
        for s in cases:
            assert s["image_id"] != image_id  # a test image is never in the reference set
            assert s["diagnosis_name"]
            assert s["licence"]
            assert s["attribution"]
            t = c.get(s["thumbnail_url"])
            assert t.status_code == 200
            assert t.headers["content-type"] == "image/webp"
            assert Image.open(io.BytesIO(t.content)).format == "WEBP"
        refused = c.post("/api/v1/predict", files={"image": ("g.png", grey.getvalue(),
                                                             "image/png")})
        assert refused.status_code == 200
        assert refused.json()["risk"] == "cannot_assess"
        assert "similar" not in refused.json()
        for bad in ("ISIC_nope", "..%2Fcard", "a" * 70):
            miss = c.get(f"/api/v1/reference/{bad}.webp")
            assert miss.status_code == 404
            assert "detail" in miss.json()
        schema = c.get("/api/v1/openapi.json").json()
        assert "similar" in schema["components"]["schemas"]["PredictResponse"]["properties"]
        assert "/api/v1/reference/{image_id}.webp" in schema["paths"]

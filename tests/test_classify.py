"""`classify`: the NeuroImage 2022 protocol against a direct computation, on constructed class trees where the answer
is known, plain image arrays as input, a missing class refused, the prototype cache reused and invalidated."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainrecon.correlation import correlation_distance
from brainrecon.errors import UserError
from brainrecon.evaluation.classify import ClassifyOptions, trial_accuracy
from brainrecon.evaluation.classify_runs import classify_runs, paired, write_outputs


def direct(feats, protos, true, ways, top, trials, seed):
    """The protocol written out plainly: per image and trial, the same random keys, sorted (not partitioned), the
    classes' Pearson r by np.corrcoef, and the true class's place among the drawn ones."""
    n_img, n_cls = len(feats), len(protos)
    acc = np.zeros(n_img)
    for i in range(n_img):
        rng = np.random.default_rng([seed, ways, i])
        keys = rng.random((trials, n_cls - 1), dtype=np.float32) if ways - 1 < n_cls - 1 else None
        others = [c for c in range(n_cls) if c != true[i]]
        d = {c: 1 - np.corrcoef(feats[i], protos[c])[0, 1] for c in range(n_cls)}
        hits = 0
        for t in range(trials):
            chosen = np.arange(n_cls - 1) if keys is None else np.argsort(keys[t], kind="stable")[:ways - 1]
            closer = sum(d[others[j]] <= d[true[i]] for j in chosen)
            hits += closer < top
        acc[i] = hits / trials
    return acc


def test_protocol_matches_a_direct_computation(rng):
    feats, protos = rng.normal(size=(6, 40)), rng.normal(size=(15, 40))
    feats[:3] += 2 * protos[[4, 9, 1]]                       # three images near their class, three not
    true = np.array([4, 9, 1, 0, 7, 14])
    opts = ClassifyOptions(ways=(2, 5, 15), tops=(1, 5), trials=40, seed=3)
    got = trial_accuracy(correlation_distance(feats, protos, cross=True), true, opts)
    for ways in opts.ways:
        for top in opts.tops:
            want = direct(feats, protos, true, ways, top, opts.trials, opts.seed)
            assert np.allclose(got[(ways, top)], want), (ways, top)
    want = 1 - np.corrcoef(feats[0], protos[3])[0, 1]
    assert np.allclose(correlation_distance(feats, protos, cross=True)[0, 3], want)
    assert got[(5, 5)].min() == 1.0                          # top-5 of a 5-way always holds


def test_random_features_score_chance(rng):
    dist = rng.random((400, 60))
    opts = ClassifyOptions(ways=(2, 10, 60), tops=(1, 5), trials=200, seed=0)
    got = trial_accuracy(dist, rng.integers(0, 60, 400), opts)
    for (ways, top), acc in got.items():
        assert abs(acc.mean() - min(1, top / ways)) < 0.03, (ways, top, acc.mean())


def make_tree(root, rng, n_classes=8, per_class=6, side=32):
    """Class c: images of one hue and stripe orientation, with noise. Returns a held-out image per class."""
    held = []
    for c in range(n_classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        hue = np.array([np.cos(c), np.sin(c), np.cos(2 * c)]) * 0.4 + 0.5
        yy, xx = np.mgrid[:side, :side] / side
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + c) * (np.cos(c) * xx + np.sin(c) * yy))
        for k in range(per_class + 1):
            img = np.clip(hue * stripes[..., None] + rng.normal(0, 0.05, (side, side, 3)), 0, 1)
            u8 = (img * 255).astype(np.uint8)
            if k == per_class:
                held.append(u8)
            else:
                Image.fromarray(u8).save(folder / f"n{c:08d}_{k}.JPEG", quality=95)
    return np.stack(held)


@pytest.fixture
def tree(tmp_path, rng):
    held = make_tree(tmp_path / "classes", rng)
    (tmp_path / "classes.txt").write_text("".join(f"n{c:08d}\n" for c in range(len(held))))
    return tmp_path / "classes", held, tmp_path / "classes.txt"


def test_known_answers_on_a_constructed_tree(tree, tmp_path, rng):
    root, held, classes = tree
    np.save(tmp_path / "recons.npy", held.astype(np.float32) / 255)        # a plain float array as input
    order = rng.permutation(len(held))
    np.savez(tmp_path / "shuffled.npz", images=held[order])                 # images under other classes' labels
    opts = ClassifyOptions(ways=(2, 8), tops=(1,), trials=100)
    said = []
    rows = classify_runs([tmp_path / "recons.npy", tmp_path / "shuffled.npz"], root, opts, "effnet-lite0", classes,
                         tmp_path / "cache", say=said.append)
    got = {(r["run"], r["ways"]): r["mean"] for r in rows}
    assert got[("recons", 8)] > 0.85 and got[("recons", 2)] > 0.95
    fixed = (order == np.arange(len(order))).mean()                          # images the shuffle left in place
    assert got[("shuffled", 8)] <= fixed + 0.2
    assert any("stand-in" in s for s in said) and any("8 classes" in s and "6-6 images" in s for s in said)
    comparisons = paired(rows)
    assert {(c["ways"], c["top"]) for c in comparisons} == {(2, 1), (8, 1)}
    paths = write_outputs(rows, comparisons, tmp_path / "out")
    assert paths["png"].exists() and "recons,effnet-lite0,8,1" in paths["csv"].read_text()


def test_missing_class_and_cache(tree, tmp_path):
    root, held, classes = tree
    np.save(tmp_path / "recons.npy", held)
    opts = ClassifyOptions(ways=(4,), tops=(1,), trials=20)
    said = []
    classify_runs([tmp_path / "recons.npy"], root, opts, "effnet-lite0", classes, tmp_path / "cache", say=said.append)
    assert not any("from the cache" in s for s in said)
    said.clear()
    classify_runs([tmp_path / "recons.npy"], root, opts, "effnet-lite0", classes, tmp_path / "cache", say=said.append)
    assert any("from the cache" in s for s in said)                          # reused
    Image.fromarray(held[0]).save(root / "n00000000" / "extra.JPEG")
    said.clear()
    classify_runs([tmp_path / "recons.npy"], root, opts, "effnet-lite0", classes, tmp_path / "cache", say=said.append)
    assert not any("from the cache" in s for s in said)                      # the tree changed: computed afresh
    bad = tmp_path / "bad.txt"
    bad.write_text(classes.read_text().replace("n00000003", "n99999999"))
    with pytest.raises(UserError, match="no folder for test class n99999999"):
        classify_runs([tmp_path / "recons.npy"], root, opts, "effnet-lite0", bad, tmp_path / "cache")
    with pytest.raises(UserError, match="--ways 50 needs 50 classes"):
        classify_runs([tmp_path / "recons.npy"], root, ClassifyOptions(ways=(50,)), "effnet-lite0", classes,
                      tmp_path / "cache")


def test_alexnet_offline_is_one_line(tmp_path, monkeypatch):
    import torch

    from brainrecon.evaluation.classify import feature_network
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match="effnet-lite0"):
        feature_network("alexnet", "cpu")

"""FER+ crowd votes as labels: the rules, both input formats, and `fer-edge eval --labels`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import SHARED, need, one_line_error, run_cli
from fer_edge.edge.contract import DEFAULT_LABELS, FER2013_CLASSES
from fer_edge.evaluation.data import load_fer2013
from fer_edge.evaluation.ferplus import VOTE_COLUMNS, load_votes, majority, soft, split_targets

VOTES = SHARED / "datasets" / "ferplus" / "ferplus_votes.csv"


@pytest.fixture(scope="module")
def votes():
    return load_votes(need(VOTES))


@pytest.fixture(scope="module")
def fer(archive):
    return load_fer2013(archive)


def test_majority_rule_reproduces_the_manifest_figures(fer, votes):
    """MANIFEST.md: the FER+ majority (ties dropped) agrees with the folder label on 16,976 of
    22,607 five-class training images and on 2,127 of 2,858 PublicTest images."""
    v, has = votes.for_names(fer.names)
    y = majority(v, DEFAULT_LABELS)
    folder = np.array([n.split("/")[1] for n in fer.names])
    five = np.isin(folder, DEFAULT_LABELS)
    ours = np.array([DEFAULT_LABELS[i] if i >= 0 else "" for i in y])
    for split, total, agree in ((0, 22607, 16976), (1, 2858, 2127)):
        m = has & five & (fer.splits == split) & (y >= 0)
        assert m.sum() == total
        assert (ours[m] == folder[m]).sum() == agree


def test_rules_on_hand_made_votes():
    cols = {c: i for i, c in enumerate(VOTE_COLUMNS)}
    rows = np.zeros((4, 10), np.float32)
    rows[0, [cols["happiness"], cols["neutral"]]] = (6, 4)  # clear happy
    rows[1, [cols["sadness"], cols["neutral"]]] = (5, 5)  # tie: no majority
    rows[2, [cols["fear"], cols["surprise"]]] = (7, 3)  # mostly outside the five
    rows[3, [cols["unknown"], cols["anger"]]] = (4, 3)  # plurality unknown
    assert majority(rows, DEFAULT_LABELS).tolist() == [1, -1, -1, -1]
    dist, keep = soft(rows, DEFAULT_LABELS)
    assert keep.tolist() == [True, True, False, False]
    np.testing.assert_allclose(dist[0], [0.4, 0.6, 0, 0, 0])
    np.testing.assert_allclose(dist[1], [0.5, 0, 0.5, 0, 0])
    # With the seven FER2013 classes, fear counts and the third face is kept.
    seven = FER2013_CLASSES
    assert soft(rows, seven)[1][2] and majority(rows, seven)[2] == seven.index("fear")


def test_ferplus_modes_take_faces_from_every_folder_and_no_private(fer, votes):
    x, t, idx = split_targets(fer, "train", DEFAULT_LABELS, "ferplus-soft", votes)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-6)
    folders = {n.split("/")[1] for n in fer.names[idx]}
    assert {"fear", "disgust"} <= folders  # FER+ relabels many of them as surprise, sad, ...
    with pytest.raises(Exception, match="withheld"):
        split_targets(fer, "private", DEFAULT_LABELS, "ferplus-majority", votes)


def test_fer2013new_csv_with_fer2013_csv_gives_the_same_targets(fer, votes, tmp_path):
    """Users with FER+'s own fer2013new.csv and the original fer2013.csv get the same labels."""
    rng = np.random.default_rng(0)
    v, has = votes.for_names(fer.names)
    pick = rng.choice(np.flatnonzero(has & (fer.splits <= 1)), 300, replace=False)
    usage = {0: "Training", 1: "PublicTest"}
    with (
        open(tmp_path / "fer2013.csv", "w", newline="") as f1,
        open(tmp_path / "fer2013new.csv", "w", newline="") as f2,
    ):
        a, b = csv.writer(f1), csv.writer(f2)
        a.writerow(["emotion", "pixels", "Usage"])
        b.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for k, i in enumerate(pick):
            a.writerow(
                [fer.labels[i], " ".join(map(str, fer.images[i].ravel())), usage[fer.splits[i]]]
            )
            b.writerow([usage[fer.splits[i]], f"fer{k:07d}.png", *v[i].astype(int)])
    from_csv = load_fer2013(tmp_path / "fer2013.csv", use_cache=False)
    csv_votes = load_votes(tmp_path / "fer2013new.csv")
    for mode in ("ferplus-majority", "ferplus-soft"):
        xa, ta, ia = split_targets(from_csv, "train", DEFAULT_LABELS, mode, csv_votes)
        _, tb, ib = split_targets(fer, "train", DEFAULT_LABELS, mode, votes)
        ref = {int(i): t for i, t in zip(ib, tb)}
        train_picks = {int(i) for i in pick if fer.splits[i] == 0}
        assert {int(pick[k]) for k in ia} == train_picks & set(ref)  # same faces kept
        for k, x, t in zip(ia, xa, ta):
            np.testing.assert_array_equal(x, fer.images[pick[k]])
            np.testing.assert_allclose(t, ref[int(pick[k])])


def eval_ferplus(model, archive, split: str, *extra: str):
    """`fer-edge eval MODEL --split SPLIT --labels ferplus-majority` on the archive."""
    return run_cli("eval", str(model), "--data", str(archive), "--split", split,
                   "--labels", "ferplus-majority", *extra)  # fmt: skip


@pytest.mark.slow  # a whole eval of PublicTest (~8 s); the rules are fast tests by hand
def test_eval_with_ferplus_majority_labels(int8_model, archive):
    proc = eval_ferplus(int8_model, archive, "public")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "n=3268" in proc.stdout and "ferplus-majority" in proc.stdout


def test_eval_ferplus_on_private_is_one_line(int8_model, archive):
    assert "withheld" in one_line_error(eval_ferplus(int8_model, archive, "private"))


def test_a_votes_file_that_is_not_one_is_one_line(int8_model, archive, tmp_path):
    bad = tmp_path / "votes.csv"
    bad.write_text("a,b\n1,2\n")
    line = one_line_error(eval_ferplus(int8_model, archive, "public", "--ferplus", str(bad)))
    assert str(bad) in line and "FER+" in line


def test_folder_label_as_extra_votes_by_hand():
    from fer_edge.evaluation.ferplus import with_folder_votes

    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    votes = np.array(
        [
            [6, 0, 0, 4, 0, 0, 0, 0, 0, 0],  # folder "sad": 6 neutral + 4 sad crowd votes
            [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],  # folder "fear" (not one of the five): crowd only
            [2, 0, 0, 0, 3, 0, 0, 0, 5, 0],  # folder "angry": unknown votes are not ours
            [0, 3, 0, 0, 0, 0, 0, 0, 0, 0],  # folder "neutral" (our class 0): 5 + 3 happy
            [0, 0, 0, 0, 0, 0, 10, 0, 0, 0],  # folder "fear", all fear: nothing of ours
        ],
        np.float32,
    )
    folders = ("sad", "fear", "angry", "neutral", "fear")
    folder = np.array([FER2013_CLASSES.index(c) for c in folders])
    dist = with_folder_votes(votes, folder, DEFAULT_LABELS, 5.0)  # neutral happy sad angry surp
    assert dist.dtype == np.float32
    np.testing.assert_allclose(dist[0], [6 / 15, 0, 9 / 15, 0, 0])
    np.testing.assert_allclose(dist[1], [0, 1, 0, 0, 0])
    np.testing.assert_allclose(dist[2], [2 / 10, 0, 0, 8 / 10, 0])
    np.testing.assert_allclose(dist[3], [5 / 8, 3 / 8, 0, 0, 0])
    np.testing.assert_array_equal(dist[4], [0, 0, 0, 0, 0])  # zeros, not NaN (keep drops it)
    # no extra votes: the crowd's distribution over our classes (the ferplus-soft rule)
    np.testing.assert_allclose(
        with_folder_votes(votes, folder, DEFAULT_LABELS, 0.0), soft(votes, DEFAULT_LABELS)[0]
    )


def test_ferplus_fer2013_mode_moves_targets_towards_the_folder(fer, votes):
    _, t_soft, i_soft = split_targets(fer, "train", DEFAULT_LABELS, "ferplus-soft", votes)
    _, t_mix, i_mix = split_targets(
        fer, "train", DEFAULT_LABELS, "ferplus-fer2013", votes, fer2013_votes=5.0
    )
    np.testing.assert_array_equal(i_soft, i_mix)  # same faces kept: the crowd's keep rule
    sad = DEFAULT_LABELS.index("sad")
    folder_sad = fer.labels[i_mix] == FER2013_CLASSES.index("sad")
    assert t_mix[folder_sad, sad].mean() > t_soft[folder_sad, sad].mean() + 0.1
    np.testing.assert_allclose(t_mix.sum(1), 1.0, atol=1e-5)


def test_fer2013_rule_takes_the_folder_label_and_drops_test_copies_from_train_only(fer):
    """`--labels fer2013`, checked against the archive's own paths: PrivateTest is every
    test/<class>/PrivateTest_* file of the five classes, each labelled with its folder, one-hot;
    drop_test_duplicates removes from train exactly the images whose pixels a test image has."""
    import hashlib

    from fer_edge.edge.errors import DataError

    folder = np.array([n.split("/")[1] for n in fer.names])
    base = np.array([n.rsplit("/", 1)[-1] for n in fer.names])
    x, t, idx = split_targets(fer, "private", DEFAULT_LABELS, "fer2013")
    private = [i for i, n in enumerate(fer.names)
               if n.startswith("test/") and base[i].startswith("PrivateTest_")
               and folder[i] in DEFAULT_LABELS]  # fmt: skip
    assert idx.tolist() == private and len(private) == 3006
    assert t.dtype == np.float32 and t.shape == (3006, 5) and set(t.sum(1)) == {1.0}
    assert [DEFAULT_LABELS[j] for j in t.argmax(1)] == folder[idx].tolist()
    assert np.array_equal(x, fer.images[idx])

    def digests(ix):
        return {hashlib.sha1(fer.images[i].tobytes()).digest() for i in ix}

    test_pixels = digests(np.flatnonzero(np.char.startswith(fer.names.astype(str), "test/")))
    _, _, kept = split_targets(fer, "train", DEFAULT_LABELS, "fer2013", drop_test_duplicates=True)
    _, _, every = split_targets(fer, "train", DEFAULT_LABELS, "fer2013")
    dropped = np.setdiff1d(every, kept)
    assert set(kept) <= set(every) and len(dropped) > 0
    assert not digests(kept) & test_pixels and digests(dropped) <= test_pixels
    assert all(fer.names[i].startswith("train/") for i in every)
    _, _, public = split_targets(
        fer, "public", DEFAULT_LABELS, "fer2013", drop_test_duplicates=True
    )
    in_public = [n.startswith("test/") and b.startswith("PublicTest_") and f in DEFAULT_LABELS
                 for n, b, f in zip(fer.names, base, folder)]  # fmt: skip
    assert len(public) == sum(in_public)  # the test halves keep their copies
    with pytest.raises(DataError, match="--labels 'fer': choose from fer2013, "):
        split_targets(fer, "private", DEFAULT_LABELS, "fer")
    with pytest.raises(DataError, match="unknown split 'val'; choose from train, public"):
        split_targets(fer, "val", DEFAULT_LABELS, "fer2013")


def test_votes_files_that_cannot_be_read_are_one_line_naming_the_file(tmp_path, monkeypatch):
    """load_votes itself (the CLI tests see only its message): a folder, a csv without the vote
    columns, a votes file with no votes, and $FERPLUS as the default when no path is given."""
    from fer_edge.edge.errors import DataError

    with pytest.raises(DataError, match=f"^{tmp_path}: a folder, not a FER[+] votes csv; pass"):
        load_votes(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("path,emotion\ntrain/happy/1.jpg,3\n")
    with pytest.raises(DataError, match=f"^{other}: not a FER[+] votes file [(]columns neutral, "):
        load_votes(other)
    empty = tmp_path / "empty.csv"
    empty.write_text("path," + ",".join(VOTE_COLUMNS) + "\ntrain/happy/1.jpg" + "," * 10 + "\n")
    with pytest.raises(DataError, match=f"^{empty}: no rows with votes$"):
        load_votes(empty)
    one = tmp_path / "one.csv"
    one.write_text("path," + ",".join(VOTE_COLUMNS) + "\ntrain/happy/1.jpg,0,9,0,0,0,0,0,0,1,0\n")
    monkeypatch.setenv("FERPLUS", str(one))
    votes = load_votes()
    assert votes.source == str(one)
    v, has = votes.for_names(np.array(["train/happy/1.jpg", "train/sad/2.jpg"]))
    assert has.tolist() == [True, False] and v[0].tolist() == [0, 9, 0, 0, 0, 0, 0, 0, 1, 0]
    monkeypatch.setenv("FERPLUS", str(tmp_path / "gone.csv"))
    with pytest.raises(DataError, match=f"^{tmp_path / 'gone.csv'}: FER[+] votes file not found"):
        load_votes()


def tiny_fer():
    """Four 2x2 faces: train/happy, train/fear, public (PublicTest) sad, private angry."""
    from fer_edge.evaluation.data import Fer2013

    names = np.array(["train/happy/a.jpg", "train/fear/b.jpg", "test/sad/PublicTest_c.jpg",
                      "test/angry/PrivateTest_d.jpg"])  # fmt: skip
    labels = np.array([FER2013_CLASSES.index(c) for c in ("happy", "fear", "sad", "angry")])
    return Fer2013(np.arange(16, dtype=np.uint8).reshape(4, 2, 2), labels.astype(np.int8),
                   np.array([0, 0, 1, 2], np.uint8), names, "tiny", "0")  # fmt: skip


def votes_csv(path, rows: dict[str, list[int]]):
    lines = ["path," + ",".join(VOTE_COLUMNS)]
    lines += [f"{name}," + ",".join(map(str, v)) for name, v in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rules_at_their_edges_by_hand():
    """A single vote is a plurality of one; a face nobody voted on is neither a majority nor
    kept, and comes back as zeros, not NaN; one vote in ours of one cast is kept whole."""
    from fer_edge.evaluation.ferplus import with_folder_votes

    cols = {c: i for i, c in enumerate(VOTE_COLUMNS)}
    rows = np.zeros((3, 10), np.float32)
    rows[0, cols["anger"]] = 1  # one vote, for angry
    rows[2, [cols["sadness"], cols["contempt"]]] = (1, 1)  # half of two votes in ours
    assert majority(rows, DEFAULT_LABELS).tolist() == [3, -1, -1]
    dist, keep = soft(rows, DEFAULT_LABELS)
    assert keep.tolist() == [True, False, True]
    np.testing.assert_array_equal(dist, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
    folder = np.array([FER2013_CLASSES.index(c) for c in ("fear", "fear", "disgust")])
    for _ in range(3):  # memory freed just before holds 7s: rows without votes must not
        junk = [np.full((3, 5), 7.0) for _ in range(16)]  # (numpy reuses small blocks)
        del junk
        got = with_folder_votes(rows, folder, DEFAULT_LABELS, 2.0)
        np.testing.assert_array_equal(got, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])


def test_split_targets_by_hand(tmp_path, monkeypatch):
    """Each rule on four hand-made faces, the votes file from $FERPLUS when none is given, the
    folder label's weight 0 unless asked, and the one-line error for a split without votes."""
    from fer_edge.edge.errors import DataError
    from fer_edge.evaluation.ferplus import HINT

    fer = tiny_fer()
    path = votes_csv(tmp_path / "v.csv", {
        "train/happy/a.jpg": [2, 8, 0, 0, 0, 0, 0, 0, 0, 0],
        "train/fear/b.jpg": [0, 0, 3, 0, 0, 0, 7, 0, 0, 0],  # mostly fear: not ours
        "test/sad/PublicTest_c.jpg": [5, 0, 0, 5, 0, 0, 0, 0, 0, 0],  # a tie
    })  # fmt: skip
    monkeypatch.setenv("FERPLUS", str(path))
    x, t, idx = split_targets(fer, "train", DEFAULT_LABELS, "fer2013")
    assert idx.tolist() == [0] and t.tolist() == [[0, 1, 0, 0, 0]]
    assert x.tolist() == [[[0, 1], [2, 3]]]
    x, t, idx = split_targets(fer, "test", DEFAULT_LABELS, "fer2013")
    assert idx.tolist() == [2, 3] and t.argmax(1).tolist() == [2, 3]
    _, t, idx = split_targets(fer, "train", DEFAULT_LABELS, "ferplus-soft")  # votes: $FERPLUS
    assert idx.tolist() == [0]
    np.testing.assert_allclose(t, [[0.2, 0.8, 0, 0, 0]])
    _, t0, idx0 = split_targets(fer, "train", DEFAULT_LABELS, "ferplus-fer2013")
    assert idx0.tolist() == [0]
    np.testing.assert_allclose(t0, t)  # no folder votes unless asked
    _, t2, _ = split_targets(fer, "train", DEFAULT_LABELS, "ferplus-fer2013", fer2013_votes=10)
    np.testing.assert_allclose(t2, [[0.1, 0.9, 0, 0, 0]])
    _, t, idx = split_targets(fer, "public", DEFAULT_LABELS, "ferplus-majority")
    assert idx.tolist() == [] and t.shape == (0, 5)  # the tie has no majority
    with pytest.raises(DataError) as exc:
        split_targets(fer, "private", DEFAULT_LABELS, "ferplus-soft")
    assert str(exc.value) == (f"{path}: no FER+ votes match the private images of tiny; {HINT}"
                              " (PrivateTest votes are withheld on purpose)")  # fmt: skip
    only_private = votes_csv(tmp_path / "p.csv", {"test/angry/PrivateTest_d.jpg": [0] * 4 + [9]
                                                  + [0] * 5})  # fmt: skip
    with pytest.raises(DataError) as exc:
        split_targets(fer, "public", DEFAULT_LABELS, "ferplus-soft", load_votes(only_private))
    said = f"{only_private}: no FER+ votes match the public images of tiny; {HINT}"
    assert str(exc.value) == said


def test_fer2013new_rows_without_an_image_name_have_no_votes(tmp_path):
    """FER+'s own fer2013new.csv leaves the name empty for the faces it dropped: those rows
    carry no votes, and the others are keyed by their line in fer2013.csv."""
    new = tmp_path / "fer2013new.csv"
    new.write_text("Usage,Image name," + ",".join(VOTE_COLUMNS) + "\n"
                   "Training,fer0000000.png,4,0,0,1,0,0,0,0,0,0\n"
                   "Training,,0,0,0,0,0,0,0,0,0,10\n"
                   "PublicTest,fer0000002.png,0,9,0,0,0,0,0,0,1,0\n")  # fmt: skip
    votes = load_votes(new)
    assert sorted(votes.counts) == ["line 2", "line 4"]
    assert votes.counts["line 4"].tolist() == [0, 9, 0, 0, 0, 0, 0, 0, 1, 0]


def test_a_missing_votes_file_says_how_to_give_one(tmp_path):
    from fer_edge.edge.errors import DataError
    from fer_edge.evaluation.ferplus import HINT

    with pytest.raises(DataError) as exc:
        load_votes(tmp_path / "gone.csv")
    assert str(exc.value) == f"{tmp_path / 'gone.csv'}: FER+ votes file not found; {HINT}"

"""The page detector: training on synthetic pages, face-body linking, panels, unreadable pages, COCO scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from comicid.cli import main
from comicid.data.detection import DETECTION_KINDS, read_page_boxes
from comicid.data.page_links import assign_to_panels, intersection_areas, link_faces_to_bodies, reading_order
from comicid.data.synth import PAGE_BOXES_FILE, generate_books
from comicid.errors import ConfigError, ImageReadError, ModelError
from comicid.evaluation.detection import coco_metrics
from comicid.models.detector import DetectorSpec, load_detector, save_detector
from comicid.training.config import TrainConfig
from comicid.training.detector import DetectorConfig, DetectorDataConfig, train_detector
from comicid.workflows.detect import detect_manifest

TINY = DetectorSpec(fpn_channels=32, head_convs=1, min_size=192, max_size=256, score_thresh=0.0)


@pytest.fixture(scope="module")
def two_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return generate_books(out, books=1, characters=3, pages=2, seed=5, page_size=(360, 480), progress=False)


def test_synth_records_every_class(two_pages: Path) -> None:
    boxes = read_page_boxes(two_pages)
    assert (two_pages.parent / PAGE_BOXES_FILE).is_file()
    assert set(boxes["kind"]) >= {"panel", "body", "face"}
    assert set(boxes["kind"]) <= set(DETECTION_KINDS)
    assert boxes["image"].nunique() == 2
    assert ((boxes["x1"] > boxes["x0"]) & (boxes["y1"] > boxes["y0"])).all()


@pytest.fixture(scope="module")
def tiny_run(two_pages: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A tiny detector trained 10 steps on the two pages (the recipe end to end: data, loop, checkpoint)."""
    torch.manual_seed(0)
    config = DetectorConfig(
        output_dir=tmp_path_factory.mktemp("run"), data=DetectorDataConfig(manifests=[two_pages], val_fraction=0.0),
        model=TINY, train=TrainConfig(steps=10, batch_size=2, lr=2e-3, weight_decay=0.0, warmup_steps=1, amp=False,
                                      channels_last=False, checkpoint_every=5, val_every=0, log_every=2))
    return train_detector(config, progress=False)


def test_tiny_detector_loss_falls(tiny_run: tuple) -> None:
    result, path = tiny_run
    losses = result.losses()
    assert result.steps == 10 and len(losses) == 5
    assert losses[-1] < 0.8 * losses[0]
    model, spec = load_detector(path)
    assert spec == TINY and not model.training
    assert (path.parent / "checkpoint.pt").is_file()


def test_face_body_linking_on_hand_made_boxes() -> None:
    bodies = np.array([[0, 0, 100, 300], [120, 0, 220, 300]], dtype=float)
    faces = np.array([[130, 10, 190, 70],     # inside body 1, at its top
                      [20, 10, 80, 70],       # inside body 0, at its top
                      [400, 10, 440, 50]])    # a close-up face with no body
    pairs = link_faces_to_bodies(faces, bodies)
    assert pairs == [(1, 0), (0, 1), (2, None)]


def test_competing_faces_are_resolved_by_assignment() -> None:
    # Two faces fall inside the wide body A; only one of them also fits body B. Greedy by best score would
    # give A the face that B needs; the assignment gives each body one face.
    bodies = np.array([[0, 0, 200, 400], [100, 0, 200, 400]], dtype=float)
    faces = np.array([[110, 5, 170, 60], [20, 5, 80, 60]], dtype=float)
    pairs = link_faces_to_bodies(faces, bodies)
    assert sorted(pairs, key=str) == sorted([(1, 0), (0, 1)], key=str)
    # One body, two faces: one is linked, the other stays a face-only instance.
    pairs = link_faces_to_bodies(faces, bodies[:1])
    assert (1, 0) in pairs or (0, 0) in pairs
    assert len(pairs) == 2 and sum(body is None for _, body in pairs) == 1
    # A face beside the body is not linked; nothing at all gives nothing.
    assert link_faces_to_bodies(np.array([[300, 0, 350, 50]]), bodies[:1]) == [(None, 0), (0, None)]
    assert link_faces_to_bodies(np.zeros((0, 4)), np.zeros((0, 4))) == []


def test_panel_assignment_and_reading_order() -> None:
    panels = np.array([[400, 0, 800, 300], [0, 0, 390, 300], [0, 310, 800, 600]], dtype=float)
    boxes = np.array([[50, 50, 150, 250],     # panel 1 (left, top)
                      [350, 20, 500, 280],    # mostly in panel 0
                      [100, 350, 200, 550],   # panel 2
                      [900, 0, 950, 50]])     # outside every panel
    assert assign_to_panels(boxes, panels).tolist() == [1, 0, 2, -1]
    assert reading_order(panels).tolist() == [1, 0, 2]
    assert assign_to_panels(boxes, np.zeros((0, 4))).tolist() == [-1, -1, -1, -1]


def test_unreadable_page_is_an_error_or_a_counted_skip(two_pages: Path, tiny_run: tuple, tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    for page in sorted((two_pages.parent / "pages").rglob("*.png")):
        (pages / page.name).write_bytes(page.read_bytes())
    (pages / "zz-broken.png").write_bytes(b"not a picture")
    detector = tiny_run[1]
    with pytest.raises(ImageReadError, match="zz-broken.png.*--skip-bad"):
        detect_manifest(pages, detector, min_score=0.0)
    found = detect_manifest(pages, detector, min_score=0.0, skip_bad=True)
    assert len(found.skipped) == 1 and "zz-broken.png" in found.skipped[0]
    frame = found.frame
    assert set(frame["kind"]) <= {"face", "body"} and frame["score"].astype(float).between(0, 1).all()
    assert frame["page"].nunique() == 2
    assert main(["-q", "import", str(pages), "--detect", "--detector", str(detector), "--min-score", "0",
                 "--out", str(tmp_path / "col")]) == 1
    listing = tmp_path / "lists" / "pages.txt"
    listing.parent.mkdir()
    listing.write_text("\n".join(str(page) for page in sorted(pages.glob("p*.png"))) + "\n")
    with pytest.raises(ConfigError, match="outside"):
        detect_manifest(listing, detector, min_score=0.0)
    assert detect_manifest(listing, detector, min_score=0.0, allow_outside=True).frame["page"].nunique() == 2



def test_half_precision_checkpoint_round_trip(tiny_run: tuple, tmp_path: Path) -> None:
    model, spec = load_detector(tiny_run[1])
    half = load_detector(save_detector(model, spec, tmp_path / "half.pt", half=True))[0]
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * tiny_run[1].stat().st_size
    for (name, a), b in zip(model.state_dict().items(), half.state_dict().values()):
        assert b.dtype == a.dtype and torch.allclose(a, b, rtol=1e-2, atol=1e-3), name
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read detector"):
        load_detector(tmp_path / "bad.pt")


def _coco_pair() -> tuple[dict, list]:
    gt = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
          "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "body"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 200], "area": 20000, "iscrowd": 0},
              {"id": 3, "image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0}]}
    predictions = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
                   {"image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.8},
                   {"image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 200], "score": 0.7}]
    return gt, predictions


def test_coco_metrics_on_a_hand_made_pair(tmp_path: Path) -> None:
    gt, predictions = _coco_pair()
    perfect = coco_metrics(gt, predictions)
    assert perfect["AP50"] == pytest.approx(1.0) and perfect["mAP"] == pytest.approx(1.0)
    # The body box moved by half its width: IoU 1/3, a miss at 0.5 for bodies only.
    moved = [dict(p) for p in predictions]
    moved[2]["bbox"] = [50, 0, 100, 200]
    scores = coco_metrics(gt, moved)
    assert scores["AP50/face"] == pytest.approx(1.0) and scores["AP50/body"] == pytest.approx(0.0)
    assert scores["AP50"] == pytest.approx(0.5)
    gt_path, pred_path, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "m.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(moved))
    assert main(["-q", "evaluate-detection", str(pred_path), str(gt_path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["AP50/body"] == pytest.approx(0.0)
    assert main(["-q", "evaluate-detection", str(tmp_path / "missing.json"), str(gt_path)]) == 1


def test_shipped_detector_finds_the_characters_of_an_unseen_page(tmp_path: Path) -> None:
    manifest = generate_books(tmp_path / "book", books=1, characters=3, pages=1, seed=4242, progress=False)
    found = detect_manifest(tmp_path / "book" / "pages")
    truth = read_page_boxes(manifest)
    for kind in ("face", "body"):
        gt = truth[truth["kind"] == kind][["x0", "y0", "x1", "y1"]].to_numpy()
        pred = found.frame[found.frame["kind"] == kind][["x0", "y0", "x1", "y1"]].to_numpy()
        inter = intersection_areas(gt, pred)
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        iou = inter / (area(gt)[:, None] + area(pred)[None, :] - inter)
        assert (iou.max(axis=1) >= 0.5).mean() >= 0.7, kind
    assert found.counts["panel"] >= 1 and (found.frame["panel"] != "").mean() > 0.8


@pytest.mark.parametrize("stopped_early", [True, False])
def test_detector_summary_line_reports_an_early_stop(stopped_early: bool, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`comicid train detector` says "(stopped early)" when the loop's early stopping fired, as every other
    recipe's summary does (it used to drop the flag for the detector)."""
    import comicid.cli.train as train_cli
    from comicid.training.loop import TrainResult

    result = TrainResult(steps=30, history=[{"loss": 2.0}, {"loss": 1.0}], best=0.4, best_step=10,
                         stopped_early=stopped_early)
    monkeypatch.setattr(train_cli, "load_config", lambda path, cls, overrides=None: object())
    monkeypatch.setattr(train_cli, "train_detector", lambda *args, **kwargs: (result, tmp_path / "detector.pt"))
    assert main(["train", "detector", str(tmp_path / "detector.yaml")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("detector: 30 steps, loss 2.0000 -> 1.0000, best validation AP@0.5 0.4000 at step 10")
    assert ("(stopped early)" in line) is stopped_early

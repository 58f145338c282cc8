"""Image-folder importer on folders laid out as users keep them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comicid.data.importers.folder import import_folder
from comicid.errors import ConfigError, ManifestError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def test_identity_folders_become_sorted_labelled_rows(tmp_path: Path) -> None:
    root = tmp_path / "heroes"
    _image(root / "zorro" / "b.png")
    _image(root / "zorro" / "a.JPG")
    _image(root / "alice" / "1.webp")
    (root / "alice" / "notes.txt").write_text("not an image")
    (root / "alice" / ".DS_Store").write_text("hidden")
    (root / ".cache").mkdir()
    _image(root / "alice" / "old" / "2.png")

    frame = import_folder(root)

    relative = [Path(image).relative_to(root).as_posix() for image in frame["image"]]
    assert relative == ["alice/1.webp", "zorro/a.JPG", "zorro/b.png"]
    assert frame["identity"].tolist() == ["alice", "zorro", "zorro"]
    assert set(frame["kind"]) == {"character"} and set(frame["book"]) == {"heroes"}
    assert np.isnan(frame["x0"]).all()
    assert frame.attrs["skipped"] == ["'alice/notes.txt' is not an image file",
                                      "'alice/old' is a folder; only root/<identity>/<image> is read"]


def test_flat_folder_is_unlabelled_with_options(tmp_path: Path) -> None:
    _image(tmp_path / "p1.png")
    _image(tmp_path / "p2.tif")

    frame = import_folder(tmp_path, kind="face", book="vol1")

    assert frame["identity"].tolist() == ["", ""]
    assert set(frame["kind"]) == {"face"} and set(frame["book"]) == {"vol1"}


def test_mixed_layout_is_refused(tmp_path: Path) -> None:
    _image(tmp_path / "loose.png")
    _image(tmp_path / "alice" / "1.png")
    with pytest.raises(ManifestError, match=r"mixes 1 images \(e.g. 'loose.png'\) with 1 identity folders"):
        import_folder(tmp_path)


def test_empty_and_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty_identity").mkdir()
    with pytest.raises(ManifestError, match="no images .* found in"):
        import_folder(tmp_path)
    with pytest.raises(ManifestError, match="image folder '.*nowhere' not found"):
        import_folder(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="kind 'head' is not one of"):
        import_folder(tmp_path, kind="head")

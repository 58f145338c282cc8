"""Manga-like speech in synthetic books: a separate stream, panel text per instance, book-level signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageChops
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score

from comicid.data.manifest import read_manifest
from comicid.data.synth import LETTERING_FILE, generate_books
from comicid.errors import ConfigError
from comicid.models.text import create_text_encoder

PAGE = (500, 690)


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("speech")
    plain = generate_books(out / "plain", books=3, characters=5, pages=6, seed=4, page_size=PAGE, progress=False)
    manga = generate_books(out / "manga", books=3, characters=5, pages=6, seed=4, page_size=PAGE, progress=False,
                           speech="manga")
    return plain, manga


def test_manga_speech_changes_only_the_lettering(books: tuple[Path, Path]) -> None:
    plain, manga = (read_manifest(path) for path in books)
    columns = ["x0", "y0", "x1", "y1", "identity", "kind", "instance", "panel", "split", "style"]
    pd.testing.assert_frame_equal(plain[columns], manga[columns])  # same figures, boxes and styles
    lettering = pd.read_csv(books[1].parent / LETTERING_FILE)
    first = lettering[lettering["image"] == "pages/b0/p000.png"]
    a, b = (Image.open(path.parent / "pages/b0/p000.png").convert("L") for path in books)
    changed = np.asarray(ImageChops.difference(a, b)) > 0  # (H, W)
    inside = np.zeros_like(changed)
    for row in first.itertuples():  # lettering boxes plus the balloon tails below them
        inside[int(row.y0) - 2:int(np.nanmax([row.y1, row.tail_y])) + 3,
               int(row.x0) - 2:int(row.x1) + 3] = True
    assert changed.any() and not (changed & ~inside).any()


def test_instances_carry_their_panel_text_and_their_own_line(books: tuple[Path, Path]) -> None:
    manga = read_manifest(books[1])
    lettering = pd.read_csv(books[1].parent / LETTERING_FILE, keep_default_na=False)
    assert {"speech", "narration"} <= set(lettering["kind"])
    spoken = lettering[lettering["kind"] == "speech"]
    assert (spoken["instance"] != "").all()
    for row in manga.itertuples():
        if row.speech:
            assert row.speech in row.text
        said = spoken[(spoken["book"] == row.book) & (spoken["instance"] == row.instance)]["text"].tolist()
        assert said == ([row.speech] if row.speech else [])
    texts = manga.groupby(["book", "panel"])["text"].nunique()
    assert (texts == 1).all()  # one text per panel, shared by every instance in it


def test_text_tells_books_apart_better_than_speakers(books: tuple[Path, Path]) -> None:
    """Cross-validated linear classifiers on word features of each line: the book is learnable, the
    speaker much less so (the structure Manga-MMTL measured on Manga109)."""
    manga = read_manifest(books[1])
    lines = manga[manga["speech"] != ""].drop_duplicates(["book", "instance"])
    features = create_text_encoder("hashing").encode(lines["speech"].tolist())

    def accuracy(target: str) -> float:
        return float(cross_val_score(LogisticRegression(C=10.0, max_iter=2000), features, lines[target],
                                     cv=KFold(3, shuffle=True, random_state=0)).mean())

    book, speaker = accuracy("book"), accuracy("identity")
    assert book > 1 / 3 + 0.15 and speaker < book - 0.25


def test_unknown_speech_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="speech must be one of catchphrase, manga"):
        generate_books(tmp_path, speech="opera", progress=False)

"""Edits replay, undo/redo, and re-clustering that never breaks what a person decided."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.identity.curation import Curator, EditError, replay
from comicid.workflows.persist import match_identities, recluster_keeping_edits
from comicid.store.collection import Collection
from comicid.store.edits import EditLog
from comicid.web.toy import embed_toy


def _two_largest(curator: Curator, book: str) -> list[str]:
    members = curator.state().members()
    ids = sorted((i for i in members if i.startswith(book + "/")), key=lambda i: -len(members[i]))
    return ids[:2]


def test_merge_split_move_not_this_and_names_replay(toy: Collection) -> None:
    curator = Curator(toy)
    a, b = _two_largest(curator, "b0")
    members = curator.state().members()
    curator.name(b, "Bob", aliases=["Bobby"], attributes={"voice": "low"})
    curator.merge([a, b], into=a)
    state = curator.state()
    assert sorted(state.members()[a]) == sorted(members[a] + members[b]) and b not in state.members()
    assert (state.roster[a].name, state.roster[a].aliases) == ("Bob", ["Bobby"])  # a had no name: b's is taken
    assert b not in state.roster
    moved = members[b][0]
    curator.split(a, [moved])
    new_id = curator.state().labels[moved]
    assert new_id not in (a, b) and curator.state().confirmed[moved] == new_id
    curator.not_this(members[a][0], a)
    assert curator.state().labels[members[a][0]] == ""
    two = members[a][1:3]
    curator.move(two, new_id)  # several instances, one event: one undo puts both back
    assert [curator.state().labels[k] for k in two] == [new_id, new_id]
    assert all((k, a) in curator.state().cannot for k in two)
    curator.undo()
    assert [curator.state().labels[k] for k in two] == [a, a]
    with pytest.raises(EditError):
        curator.name("no-such-identity", "X")
    with pytest.raises(EditError):
        curator.name(a, "x" * 500)


def test_undo_redo_and_a_new_edit_clears_redo(toy: Collection) -> None:
    curator = Curator(toy)
    a, b = _two_largest(curator, "b0")
    before = dict(curator.state().labels)
    curator.merge([a, b])
    curator.undo()
    assert curator.state().labels == before
    curator.redo()
    assert b not in curator.state().members()
    curator.undo()
    curator.name(a, "Ann")  # a new edit: the undone merge can no longer be redone
    with pytest.raises(EditError, match="nothing to redo"):
        curator.redo()
    assert curator.state().roster[a].name == "Ann"
    # replay is a pure function of the log and the base
    again = replay(EditLog(toy.root).events(), curator.base())
    assert again.labels == curator.state().labels


def test_reclustering_keeps_must_links_cannot_links_and_names(toy: Collection) -> None:
    curator = Curator(toy)
    embedded = embed_toy(toy)
    members = curator.state().members()
    a, b = _two_largest(curator, "b0")
    c, _ = _two_largest(curator, "b1")
    curator.merge([a, b], into=a)            # two characters forced together: the clusterer would not
    curator.name(a, "Ann & Bob")
    curator.name(c, "Cid", attributes={"gender": "m"})
    rejected = members[c][0]
    curator.not_this(rejected, c)
    state = curator.state()
    for threshold in (0.3, 0.5, 0.9):       # very different clusterings, same decisions kept
        assignment = recluster_keeping_edits(embedded, state, threshold=threshold, progress=False)
        labels = dict(zip(assignment.table["instance_key"], assignment.table["identity_id"]))
        for key, identity in state.confirmed.items():
            assert labels[key] == identity
        for key, identity in state.cannot:
            assert labels[key] != identity
        assert labels[rejected] != c
        assert set(members[c][1:]) & {k for k, v in labels.items() if v == c}, "named identity kept its id"
        info = assignment.info["edits"]
        assert info["confirmed"] == len(state.confirmed) and info["must_links"] > 0
    # written back as the new base, the names still resolve to the same instances
    toy.write_assignments(assignment.table, assignment.info)
    after = Curator(toy).state()
    assert after.roster[a].name == "Ann & Bob" and after.roster[c].attributes == {"gender": "m"}
    assert sorted(after.members()[a]) == sorted(members[a] + members[b])


def test_matching_is_one_to_one_per_scope_and_never_reuses_ids() -> None:
    new = np.array(["x/c0", "x/c0", "x/c1", "x/c2", "y/c0"], dtype=object)
    old = np.array(["x/c1", "x/c1", "x/c0", "", "x/c1"], dtype=object)
    scopes = np.array(["x", "x", "x", "x", "y"], dtype=object)
    out = match_identities(new, old, scopes, reserved={"x/c2"})
    assert out[0] == out[1] == "x/c1" and out[2] == "x/c0"
    assert out[3] not in {"x/c0", "x/c1", "x/c2"}
    assert out[4] == "x/c1"  # an identity spanning two scopes keeps one id


def test_a_person_beats_a_panel_when_they_disagree(toy: Collection) -> None:
    curator = Curator(toy)
    parts = toy.instances().drop_duplicates("instance_key")
    labels = curator.state().labels
    shared = parts[parts["panel"] != ""].groupby(["book", "panel"])["instance_key"].agg(list)
    pair = next(keys[:2] for keys in shared if len(keys) > 1 and labels[keys[0]] != labels[keys[1]])
    a, b = labels[pair[0]], labels[pair[1]]
    curator.merge([a, b], into=a)  # two characters of one panel declared one: the clusterer could not do it
    state = curator.state()
    assignment = recluster_keeping_edits(embed_toy(toy), state, threshold=0.5, progress=False)
    final = dict(zip(assignment.table["instance_key"], assignment.table["identity_id"]))
    assert final[pair[0]] == final[pair[1]] == a
    assert assignment.info["edits"]["must_links_dropped"] > 0

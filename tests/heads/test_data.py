"""Feature batches: modality assembly, in-memory and streamed epochs, views, placement."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.config import DataConfig
from heads.data import (DataError, InMemoryFeatures, StreamedFeatures, assemble_modalities,
                        check_views, fits_in_memory, load_features, pick_two_views,
                        steps_per_epoch)
from pipeline.store import FeatureStore, open_store

KEYS = {"video": ("frames_2d", "frames_3d"), "audio": ("audio",), "text": ("text",)}
CPU = torch.device("cpu")


def _rows(batches: list[dict[str, torch.Tensor]], modality: str = "video") -> np.ndarray:
    return torch.cat([b[modality] for b in batches]).numpy()


def _sorted_rows(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


def test_video_is_frames_2d_then_frames_3d(store_1view: str) -> None:
    store = open_store(store_1view)
    layout = assemble_modalities(store, KEYS, ["video", "audio", "text"])
    assert layout.keys["video"] == ("frames_2d", "frames_3d")
    assert layout.dims == {"video": 128, "audio": 32, "text": 24}
    data = load_features(store, layout, ["val"], DataConfig(batch_size=16, placement="memory"),
                         device=CPU, pair_views=False)
    pos = store.positions("val")
    expected = np.concatenate([store.read("frames_2d", pos, view=0),
                               store.read("frames_3d", pos, view=0)], axis=1)
    got = _rows(list(data.ordered()))
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_a_store_without_frames_3d_gives_video_from_frames_2d(store_no3d: str,
                                                              caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    store = open_store(store_no3d)
    with caplog.at_level(logging.WARNING, logger="heads.data"):
        layout = assemble_modalities(store, KEYS, ["video", "text"])
    assert layout.keys == {"video": ("frames_2d",), "text": ("text",)}
    assert layout.dims["video"] == 64
    assert "missing ['frames_3d']" in caplog.text


def test_a_modality_without_any_key_is_an_error(store_no3d: str) -> None:
    store = open_store(store_no3d)
    with pytest.raises(DataError, match=r"modality 'depth' needs key\(s\) \['depth_map'\].*"
                                        r"has only \['audio', 'frames_2d', 'text'\]"):
        assemble_modalities(store, {**KEYS, "depth": ("depth_map",)}, ["video", "depth"])
    with pytest.raises(DataError, match="no entry in modality_keys"):
        assemble_modalities(store, KEYS, ["depth"])


def test_views_check(store_1view: str, store_views: str, tmp_path: Path, store_maker) -> None:
    with pytest.raises(DataError, match=r"1 view\(s\) per sample.*at least 3"):
        check_views(open_store(store_1view), needs_views=True)
    check_views(open_store(store_1view), needs_views=False)
    check_views(open_store(store_views), needs_views=True)
    two = open_store(store_maker(tmp_path / "two", views=2).url)
    with pytest.raises(DataError, match="two augmented views needs at least 3.*contrast_views"):
        check_views(two, needs_views=True)
    check_views(two, needs_views=True, contrast_views="all")


@pytest.mark.parametrize("rows, batch, drop_last, expected", [
    (10, 4, True, 2), (10, 4, False, 3), (9, 4, False, 2), (8, 4, False, 2), (3, 4, True, 1),
])
def test_steps_per_epoch(rows: int, batch: int, drop_last: bool, expected: int) -> None:
    assert steps_per_epoch(rows, batch, drop_last) == expected


def _sources(store_url: str, **kw) -> tuple[InMemoryFeatures, StreamedFeatures]:
    store = open_store(store_url)
    layout = assemble_modalities(store, KEYS, ["video", "audio", "text"])
    out = []
    for placement in ("memory", "stream"):
        cfg = DataConfig(batch_size=kw.get("batch_size", 40), drop_last=kw.get("drop_last", False),
                         placement=placement, chunk_rows=50, shuffle_chunks=2,
                         contrast_views=kw.get("contrast_views", "augmented"))
        out.append(load_features(store, layout, ["train"], cfg, device=CPU,
                                 pair_views=kw.get("pair_views", False)))
    return out[0], out[1]


def test_both_sources_serve_every_row_once_per_epoch(store_1view: str) -> None:
    memory, stream = _sources(store_1view)
    assert isinstance(memory, InMemoryFeatures) and isinstance(stream, StreamedFeatures)
    reference = _sorted_rows(_rows(list(memory.ordered())))
    assert len(reference) == 288
    for source in (memory, stream):
        batches = list(source.epoch(torch.Generator().manual_seed(0)))
        assert len(batches) == len(source) == 8  # 7 full batches of 40 and one of 8
        assert all(len(b["video"]) == 40 for b in batches[:-1])
        assert {m: b.dtype for m, b in batches[0].items()} == dict.fromkeys(KEYS, torch.float32)
        np.testing.assert_array_equal(_sorted_rows(_rows(batches)), reference)
        # rows of one sample stay together across modalities
        first = batches[0]
        assert first["video"].shape[0] == first["audio"].shape[0] == first["text"].shape[0]
    stream.close()


def test_rows_stay_aligned_across_modalities(store_1view: str) -> None:
    memory, stream = _sources(store_1view)
    ordered = list(memory.ordered())
    lookup = {tuple(v.tolist()): a.tolist() for b in ordered
              for v, a in zip(b["video"], b["audio"])}
    for source in (memory, stream):
        batch = next(iter(source.epoch(torch.Generator().manual_seed(3))))
        for v, a in zip(batch["video"], batch["audio"]):
            assert lookup[tuple(v.tolist())] == a.tolist()
    stream.close()


def test_epochs_are_seeded_and_shuffled(store_1view: str) -> None:
    memory, stream = _sources(store_1view, drop_last=True)
    for source in (memory, stream):
        a = _rows(list(source.epoch(torch.Generator().manual_seed(5))))
        b = _rows(list(source.epoch(torch.Generator().manual_seed(5))))
        c = _rows(list(source.epoch(torch.Generator().manual_seed(6))))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert len(a) == 7 * 40  # drop_last: full batches only
    stream.close()


def test_streamed_ordered_matches_in_memory_ordered(store_1view: str) -> None:
    memory, stream = _sources(store_1view)  # chunks of 50 rows, batches of 40
    streamed, in_memory = list(stream.ordered()), list(memory.ordered())
    assert [len(b["video"]) for b in streamed] == [len(b["video"]) for b in in_memory]
    np.testing.assert_array_equal(_rows(streamed), _rows(in_memory))
    stream.close()


@pytest.mark.parametrize("store_name, pair_views", [("store_1view", False),
                                                     ("store_views", True)])
def test_streamed_read_ahead_never_changes_the_batches(store_name: str, pair_views: bool,
                                                      request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(store_name)
    _, stream = _sources(store, pair_views=pair_views)
    g = torch.Generator().manual_seed(1)
    list(stream.epoch(g))
    assert stream._ahead is not None  # the next epoch's first group is being read
    states = [g.get_state()]
    second = list(stream.epoch(g))
    assert stream._ahead is not None
    torch.randperm(10, generator=g)  # the generator moves on: the read-ahead does not fit
    states.append(g.get_state())
    third = list(stream.epoch(g))
    for batches, state in zip((second, third), states):  # the same epochs, nothing read ahead
        _, fresh = _sources(store, pair_views=pair_views)
        expected = list(fresh.epoch(torch.Generator().set_state(state)))
        np.testing.assert_array_equal(_rows(batches), _rows(expected))
        fresh.close()
    stream.close()


def test_an_abandoned_streamed_epoch_leaves_the_next_one_whole(store_1view: str) -> None:
    memory, stream = _sources(store_1view)
    reference = _sorted_rows(_rows(list(memory.ordered())))
    abandoned = stream.epoch(torch.Generator().manual_seed(0))
    next(abandoned)  # the next group is being read into the other buffer
    batches = list(stream.epoch(torch.Generator().manual_seed(2)))
    np.testing.assert_array_equal(_sorted_rows(_rows(batches)), reference)
    np.testing.assert_array_equal(_sorted_rows(_rows(list(stream.ordered()))), reference)
    stream.close()


@pytest.mark.gpu
@pytest.mark.parametrize("pair_views", [False, True])
def test_streamed_batches_on_cuda_are_those_on_the_cpu(store_views: str,
                                                       pair_views: bool) -> None:
    """Pinned buffers, copies without blocking, gathers on the device: the same batches."""
    store = open_store(store_views)
    layout = assemble_modalities(store, KEYS, ["video", "audio", "text"])
    cfg = DataConfig(batch_size=40, drop_last=False, placement="stream", chunk_rows=50,
                     shuffle_chunks=2)
    served = []
    for device in (CPU, torch.device("cuda")):
        source = load_features(store, layout, ["train"], cfg, device=device,
                               pair_views=pair_views)
        assert isinstance(source, StreamedFeatures)
        g = torch.Generator().manual_seed(0)
        batches = [b for _ in range(3) for b in source.epoch(g)] + list(source.ordered())
        assert all(t.device.type == device.type for b in batches for t in b.values())
        served.append([{m: t.cpu() for m, t in b.items()} for b in batches])
        source.close()
    assert len(served[0]) == len(served[1])
    for a, b in zip(*served):
        assert all(torch.equal(a[m], b[m]) for m in KEYS)  # float16 -> float32 is exact


def test_two_distinct_augmented_views_per_row(store_views: str) -> None:
    """The pair is two of the augmented views 1..V-1, never the clean view 0 (the reference
    code contrasts two augmented views); ``contrast_views: all`` may pair the clean one."""
    store = open_store(store_views)
    views = store.read("audio", store.positions("train")).astype(np.float32)  # [n, 3, 32]
    sets = [{tuple(r) for r in views[:, v]} for v in range(3)]
    for contrast, allowed in (("augmented", {(1, 2), (2, 1)}),
                              ("all", {(a, b) for a in range(3) for b in range(3) if a != b})):
        memory, stream = _sources(store_views, pair_views=True, contrast_views=contrast)
        seen = set()
        for source in (memory, stream):
            batch = next(iter(source.epoch(torch.Generator().manual_seed(0))))
            assert batch["audio"].shape == (40, 2, 32)
            for r in batch["audio"]:
                pair = tuple(next(v for v in range(3) if tuple(r[i].tolist()) in sets[v])
                             for i in range(2))
                assert pair in allowed, (contrast, pair)
                seen.add(pair)
        assert seen == allowed, "every allowed pair turns up in 80 rows"
        stream.close()


def test_pick_two_views_without_generator_takes_views_0_and_1() -> None:
    x = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    assert torch.equal(pick_two_views(x, None), x[:, :2])
    picked = pick_two_views(x, torch.Generator().manual_seed(0))
    assert (picked[:, 0] != picked[:, 1]).all()


def test_auto_placement_and_empty_splits(store_1view: str) -> None:
    store = open_store(store_1view)
    layout = assemble_modalities(store, KEYS, ["audio"])
    auto = load_features(store, layout, ["train"], DataConfig(batch_size=16), device=CPU,
                         pair_views=False)
    assert isinstance(auto, InMemoryFeatures) and auto.tensors["audio"].dtype == torch.float32
    assert load_features(store, layout, ["test"], DataConfig(), device=CPU,
                         pair_views=False) is None
    assert fits_in_memory(1000, CPU, 0.5)
    assert not fits_in_memory(1 << 60, CPU, 0.5)



def _text_store(path: Path, *, last_differs: bool) -> FeatureStore:
    """40 clips with one text vector for all (the last one's changed with ``last_differs``)."""
    from pipeline.store.writer import write_arrays

    n = 40
    rng = np.random.default_rng(0)
    text = np.repeat(rng.normal(size=(1, 1, 24)), n, axis=0).astype(np.float16)
    if last_differs:
        text[-1, 0, 0] += 1
    write_arrays(path, dataset="synthetic", sample_ids=[f"s{i}" for i in range(n)],
                 splits=["train"] * n, labels=np.zeros(n, int), label_names=["a"],
                 features={"audio": rng.normal(size=(n, 1, 32)).astype(np.float16),
                           "text": text}, shard_size=16)
    return open_store(path)


def test_constant_text_is_refused_unless_text_is_dropped(tmp_path: Path) -> None:
    store = _text_store(tmp_path / "s", last_differs=False)
    cfg = DataConfig(batch_size=8, placement="memory")
    with pytest.raises(DataError, match=r"text features of all 40 clips .* the same.*"
                                        r"cli transcribe"):
        load_features(store, assemble_modalities(store, KEYS, ["audio", "text"]), ["train"],
                      cfg, device=CPU, pair_views=False)
    # text dropped: the same store trains
    assert load_features(store, assemble_modalities(store, KEYS, ["audio"]), ["train"], cfg,
                         device=CPU, pair_views=False) is not None


def test_text_that_varies_in_a_late_chunk_is_accepted(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import heads.data

    monkeypatch.setattr(heads.data, "TEXT_CHECK_ROWS", 4)  # ten chunks, the last one differs
    store = _text_store(tmp_path / "s", last_differs=True)
    layout = assemble_modalities(store, KEYS, ["text"])
    heads.data.check_text_varies(store, layout, store.positions("train"), ["train"])


@pytest.mark.parametrize("placement", ["memory", "stream"])
def test_instance_cont_draws_two_distinct_augmented_views_per_clip_and_epoch(
        tmp_path: Path, placement: str) -> None:
    """The reference drew 2 of its 10 views per clip and epoch: from a store of 5 augmented
    views a clip meets many pairs over the epochs, two distinct ones each time, never view 0."""
    from pipeline.store import write_arrays

    n, views = 8, 6
    value = np.arange(views, dtype=np.float16)[None, :, None] + 10 * np.arange(n)[:, None, None]
    store = write_arrays(tmp_path / "s", dataset="synthetic",
                         sample_ids=[f"s{i}" for i in range(n)], splits=["train"] * n,
                         features={"audio": np.broadcast_to(value, (n, views, 1)).copy()},
                         labels=np.full(n, -1), label_names=[])
    layout = assemble_modalities(store, KEYS, ["audio"])
    data = load_features(store, layout, ["train"],
                         DataConfig(batch_size=4, placement=placement, chunk_rows=4,
                                    shuffle_chunks=2), device=CPU, pair_views=True)
    assert data is not None
    generator = torch.Generator().manual_seed(0)
    pairs: dict[int, set[tuple[int, int]]] = {i: set() for i in range(n)}
    for _ in range(12):
        for batch in data.epoch(generator):
            for a, b in batch["audio"][..., 0].tolist():
                clip, first, second = int(a) // 10, int(a) % 10, int(b) % 10
                assert int(b) // 10 == clip and first != second and 0 not in (first, second)
                pairs[clip].add((first, second))
    assert all(len(seen) >= 5 for seen in pairs.values()), pairs
    data.close()

"""Faces linked across frames: a moving face found by the real detector in a video the test writes
stays one track on its true boxes; two faces are two tracks; a long gap ends a track; overlaps are
taken best first."""
import pytest

from fer.v1 import inference_pb2
from ferkit.vision import CLASSES
from services.reports import media
from services.reports.tracks import TrackLinker, iou, link_tracks
from tests.fixtures.videos import write_video


def face(box, label="neutral"):
    scores = [0.1 / 6] * len(CLASSES)
    scores[CLASSES.index(label)] = 0.9
    return {"box": list(box), "label": label, "scores": scores}


async def test_a_moving_face_is_one_track_on_its_true_boxes(tmp_path, inference_stub):
    """The path a video takes: sampled (reduced, so boxes must be mapped back), faces found by
    PredictFrames, linked; every point lies on where the video put the face."""
    path = tmp_path / "walk.mp4"
    truth = {round(t, 3): box for t, box in write_video(path, seconds=4.0, fps=15, size=(480, 320), codec="h264")}
    samples = list(media.sample_frames(path, fps=5, max_side=320))
    assert len(samples) == 20 and samples[0].scale == pytest.approx(2 / 3)
    reply = await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=[s.jpeg for s in samples]))
    frames = [
        (s.t, [{"box": s.in_video((f.box.x, f.box.y, f.box.width, f.box.height)), "label": f.label, "scores": list(f.scores)}
               for f in answer.faces])
        for s, answer in zip(samples, reply.frames)
    ]
    [track] = link_tracks(frames, list(reply.model.classes))
    assert track["track"] == 1 and len(track["points"]) == 20
    assert track["start_t"] == 0.0 and track["end_t"] == pytest.approx(samples[-1].t)
    for point in track["points"]:
        expected = truth[round(point["t"], 3)]
        assert iou(point["box"], expected) > 0.5, (point["t"], point["box"], expected)
    # The face crossed the picture: the track went with it (a track stuck in place would fail above).
    assert track["points"][-1]["box"][0] - track["points"][0]["box"][0] > 250
    assert sum(track["share"]) == pytest.approx(1.0)
    assert track["dominant_label"] == CLASSES[max(range(len(CLASSES)), key=lambda i: track["share"][i])]


def test_two_faces_are_two_tracks_numbered_by_start():
    frames = []
    for k in range(12):
        t = k * 0.25
        faces = [face((10 + 6 * k, 20, 80, 100), "happy")]
        if k >= 2:  # the second person walks in later, the other way
            faces.append(face((400 - 6 * k, 30, 80, 100), "sad" if k % 3 else "angry"))
        frames.append((t, faces[::-1] if k % 2 else faces))  # the detector's order does not matter
    first, second = link_tracks(frames, CLASSES)
    assert (first["track"], first["start_t"], len(first["points"])) == (1, 0.0, 12)
    assert (second["track"], second["start_t"], len(second["points"])) == (2, 0.5, 10)
    assert all(p["box"][1] == 20 for p in first["points"]) and all(p["box"][1] == 30 for p in second["points"])
    assert first["dominant_label"] == "happy" and first["share"][CLASSES.index("happy")] == 1.0
    assert second["dominant_label"] == "sad"
    assert second["share"][CLASSES.index("angry")] == pytest.approx(0.3)
    assert second["share"][CLASSES.index("sad")] == pytest.approx(0.7)
    assert sum(second["share"]) == pytest.approx(1.0)
    assert first["points"][3] == {"t": 0.75, "box": [28, 20, 80, 100], "label": "happy", "scores": face((0, 0, 1, 1), "happy")["scores"]}


@pytest.mark.parametrize("gap_s,tracks", [(1.0, 1), (2.0, 2)])
def test_a_face_unseen_longer_than_max_gap_starts_a_new_track(gap_s, tracks):
    seen = [k * 0.25 for k in range(5)]  # 0 .. 1 s
    back = [1.0 + gap_s + k * 0.25 for k in range(5)]
    frames = [(t, [face((100, 50, 80, 100))]) for t in seen]
    frames += [(t, []) for t in (1.25, 1.5)]
    frames += [(t, [face((104, 50, 80, 100))]) for t in back]
    found = link_tracks(frames, CLASSES, max_gap_s=1.5)
    assert len(found) == tracks
    assert found[-1]["end_t"] == back[-1]
    if tracks == 2:
        assert (found[0]["end_t"], found[1]["start_t"]) == (1.0, back[0])


def test_overlaps_are_taken_best_first_and_a_face_far_away_starts_a_track():
    start = (0.0, [face((0, 0, 100, 100)), face((60, 0, 100, 100))])
    # One face near both: it continues the track it overlaps most (the one at x=60), not the first one.
    near_both = (0.25, [face((50, 0, 100, 100)), face((400, 0, 100, 100))])
    left, right, far = link_tracks([start, near_both], CLASSES)
    assert [p["box"][0] for p in left["points"]] == [0]
    assert [p["box"][0] for p in right["points"]] == [60, 50]
    assert [p["box"][0] for p in far["points"]] == [400] and far["start_t"] == 0.25


def test_overlap_below_the_minimum_is_a_new_track_and_nothing_gives_nothing():
    frames = [(0.0, [face((0, 0, 100, 100))]), (0.25, [face((70, 0, 100, 100))])]  # IoU 0.18
    assert len(link_tracks(frames, CLASSES, iou_min=0.3)) == 2
    assert len(link_tracks(frames, CLASSES, iou_min=0.15)) == 1
    assert link_tracks([], CLASSES) == [] and link_tracks([(0.0, []), (0.25, [])], CLASSES) == []


def test_a_linker_fed_in_parts_gives_the_tracks_of_the_whole_and_keeps_no_answer_in_step():
    # Two faces walking apart, one leaving for a while: every part boundary must give what all at once gives.
    frames = [(k * 0.25, [face((10 + 8 * k, 40, 80, 100), "happy" if k % 3 else "sad")]
               + ([face((300 - 6 * k, 40, 80, 100), "fear")] if k < 6 or k > 14 else []))
              for k in range(20)]
    whole = link_tracks(frames, CLASSES)
    assert len(whole) == 3  # the second face came back after more than max_gap_s: a new track
    for cut in (1, 7, 13, 19):
        linker = TrackLinker()
        for t, faces in frames[:cut]:
            linker.add(t, faces)
        early = linker.tracks(CLASSES)
        for t, faces in frames[cut:]:
            linker.add(t, faces)
        assert linker.tracks(CLASSES) == whole, cut
        # An answer given earlier is not changed by the frames fed after it.
        assert early == link_tracks(frames[:cut], CLASSES), cut

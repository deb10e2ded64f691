"""Videos the test writes itself, in each container and codec uploads come in: probed, sampled at
k / fps as a stream, resumed by seeking, turned upright like a phone's, and refused with one clear
line when they cannot be analysed."""
import io
import math

import av
import numpy as np
import pytest
from PIL import Image

from services.reports import media
from tests.fixtures.videos import BACKGROUND, frames, write_video

# (file name, codec): what phones, browsers and older cameras produce.
VIDEOS = [("clip.mp4", "h264"), ("clip.webm", "vp9"), ("clip.mov", "h264"), ("mjpeg.avi", "mjpeg"),
          ("mpeg4.avi", "mpeg4"), ("clip.mkv", "vp9")]
CODEC_NAMES = {"h264": "h264", "vp9": "vp9", "mjpeg": "mjpeg", "mpeg4": "mpeg4"}


def head_centre(rgb: np.ndarray) -> tuple[float, float]:
    """Centre of what is not the plain background: where the pasted head is."""
    mask = (np.abs(rgb.astype(int) - BACKGROUND) > 24).any(axis=2)
    ys, xs = np.nonzero(mask)
    return (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2


def rgb_of(sample: media.SampledFrame) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample.jpeg)).convert("RGB"))


@pytest.mark.parametrize("name,codec", VIDEOS)
def test_each_container_is_probed_and_sampled_at_k_over_fps(tmp_path, name, codec):
    path = tmp_path / name
    truth = dict((round(t, 3), box) for t, box in write_video(path, seconds=4.0, fps=15, codec=codec))
    info = media.probe(path, max_seconds=60)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)
    assert (info.width, info.height, info.codec) == (480, 320, CODEC_NAMES[codec])
    assert info.container

    samples = list(media.sample_frames(path, fps=4))
    assert len(samples) == media.frames_total(info.duration_s, 4) == 16
    assert [s.index for s in samples] == list(range(16))
    for sample in samples:
        # The first frame at or after k / fps, in a 15 fps video.
        assert sample.t == pytest.approx(math.ceil(sample.index * 15 / 4 - 1e-9) / 15, abs=2e-3)
        rgb = rgb_of(sample)
        assert rgb.shape == (320, 480, 3) and sample.scale == 1.0
        x, y, w, h = truth[round(sample.t, 3)]
        cx, cy = head_centre(rgb)
        # The head is centred on the face box (the face sits in the middle of the cut-out).
        assert abs(cx - (x + w / 2)) < 4 and abs(cy - (y + h / 2)) < 10, (sample.index, (cx, cy), (x, y, w, h))


@pytest.mark.parametrize("name,codec", VIDEOS)
def test_resuming_at_an_index_gives_the_tail_of_a_full_run(tmp_path, name, codec):
    path = tmp_path / name
    write_video(path, seconds=4.0, fps=15, codec=codec, keyframe_every=15)
    full = [(s.index, s.t, s.jpeg) for s in media.sample_frames(path, fps=5)]
    assert len(full) == 20
    # 7 lands between keyframes (1.4 s), 10 on one (2.0 s): decoding starts at the keyframe before.
    for start in (7, 10, 19):
        tail = [(s.index, s.t, s.jpeg) for s in media.sample_frames(path, fps=5, start_index=start)]
        assert tail == full[start:], start
    assert list(media.sample_frames(path, fps=5, start_index=20)) == []


def test_a_video_sampled_faster_than_its_frame_rate_repeats_frames_with_dense_indices(tmp_path):
    path = tmp_path / "slow.mp4"
    write_video(path, seconds=2.0, fps=5, codec="h264")
    samples = list(media.sample_frames(path, fps=10))
    assert [s.index for s in samples] == list(range(len(samples)))
    assert len(samples) == media.frames_total(media.probe(path, 60).duration_s, 10) == 20
    # Sample k is the frame at ceil(k / 2) / 5 s: pairs share a frame.
    assert [round(s.t, 2) for s in samples[:5]] == [0.0, 0.2, 0.2, 0.4, 0.4]
    resumed = list(media.sample_frames(path, fps=10, start_index=3))
    assert [(s.index, s.t, s.jpeg) for s in resumed] == [(s.index, s.t, s.jpeg) for s in samples[3:]]


def test_a_webm_without_duration_or_index_as_a_browser_records_it(tmp_path):
    """MediaRecorder's WebM (Matroska "live"): no duration in the header and no index to seek with.
    The duration is read from the packets, and resuming still gives the tail of a full run."""
    path = tmp_path / "recorded.webm"
    with av.open(str(path), "w", options={"live": "1"}) as container:
        stream = container.add_stream("libvpx-vp9", rate=10, options={"deadline": "realtime", "cpu-used": "8"})
        stream.width, stream.height, stream.pix_fmt = 480, 320, "yuv420p"
        for _, rgb, _ in frames(3.0, 10, (480, 320)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    info = media.probe(path, 60)
    assert info.duration_s == pytest.approx(3.0, abs=0.15)
    with pytest.raises(media.VideoError, match="at most 2 s"):
        media.probe(path, 2)
    full = [(s.index, s.t, s.jpeg) for s in media.sample_frames(path, fps=4)]
    assert len(full) == media.frames_total(info.duration_s, 4) == 12
    assert [(s.index, s.t, s.jpeg) for s in media.sample_frames(path, fps=4, start_index=9)] == full[9:]


def test_large_frames_are_reduced_and_scale_maps_back(tmp_path):
    path = tmp_path / "hd.mp4"
    write_video(path, seconds=1.0, fps=10, size=(1280, 720), codec="h264")
    assert (media.probe(path, 60).width, media.probe(path, 60).height) == (1280, 720)
    [first, *_] = media.sample_frames(path, fps=2, max_side=640)
    image = Image.open(io.BytesIO(first.jpeg))
    assert image.format == "JPEG" and image.size == (640, 360)
    assert first.scale == pytest.approx(0.5)


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_phone_video_is_turned_upright(tmp_path, rotation):
    """The pixels are stored sideways with a display rotation (as phones do): probe answers the
    upright size and the samples are the upright picture."""
    path = tmp_path / "phone.mp4"
    write_video(path, seconds=1.0, fps=15, size=(320, 480), codec="h264", rotation=rotation)
    info = media.probe(path, 60)
    assert (info.width, info.height) == (320, 480)
    upright = {round(t, 3): rgb for t, rgb, _ in frames(1.0, 15, (320, 480))}
    for sample in media.sample_frames(path, fps=4):
        got = rgb_of(sample).astype(int)
        assert got.shape == (480, 320, 3)
        # Compression leaves about 1 grey level on average; a wrong turn leaves tens.
        assert np.abs(got - upright[round(sample.t, 3)]).mean() < 4, sample.index


def test_frames_total_counts_sample_times_before_the_end():
    assert media.frames_total(4.0, 4) == 16
    assert media.frames_total(2.5, 2) == 5
    assert media.frames_total(2.6, 2) == 6
    assert media.frames_total(0.05, 4) == 1


def test_what_is_not_a_video_is_refused_with_one_line(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(media.VideoError, match="not a video file"):
        media.probe(junk, 60)

    photo = tmp_path / "photo.mp4"
    Image.new("RGB", (64, 64), "white").save(photo, format="PNG")
    with pytest.raises(media.VideoError, match="is not a video; send MP4, WebM, MOV or AVI"):
        media.probe(photo, 60)

    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    with pytest.raises(media.VideoError, match="not a video file"):
        media.probe(empty, 60)


def test_an_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(media.VideoError, match="no video stream"):
        media.probe(path, 60)


def test_a_video_longer_than_the_limit_is_refused(tmp_path):
    path = tmp_path / "long.webm"
    write_video(path, seconds=4.0, fps=10, codec="vp9")
    assert media.probe(path, max_seconds=5).duration_s == pytest.approx(4.0, abs=0.1)
    with pytest.raises(media.VideoError, match=r"the video is 4 s long; at most 3 s is allowed"):
        media.probe(path, max_seconds=3)


def test_data_broken_mid_stream_stops_with_how_far_it_got(tmp_path):
    path = tmp_path / "broken.avi"
    write_video(path, seconds=4.0, fps=15, codec="mjpeg")
    data = path.read_bytes()
    half = len(data) // 2
    path.write_bytes(data[:half] + np.random.default_rng(2).bytes(len(data) // 4) + data[half + len(data) // 4 :])
    media.probe(path, 60)  # the start is intact: the upload is accepted
    got = []
    with pytest.raises(media.VideoError, match=r"could not be decoded past \d+\.\d+ s \(sample (\d+)\)") as caught:
        for sample in media.sample_frames(path, fps=4):
            got.append(sample.index)
    assert got == list(range(len(got))) and 4 <= len(got) < 16
    assert f"(sample {len(got)})" in str(caught.value)

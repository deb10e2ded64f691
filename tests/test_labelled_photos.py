"""bench.labelled_photos without the platform: the labels file, the largest face, the scores, and the
whole REST conversation (register, log in, upload with the mode, refresh an expired token) against a
fake gateway that answers as services/gateway does."""
import json

import httpx
import pytest
from PIL import Image

from bench.labelled_photos import BadInput, Item, Outcome, largest_face, main, outcome_of, read_labels, report, summarise
from ferkit.vision import CLASSES


def photos(tmp_path, rows: list[tuple[str, str]], header: str = "image_path,labels"):
    for name, _ in rows:
        if not (tmp_path / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), (120, 110, 100)).save(tmp_path / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join([header] + [f"{n},{label}" for n, label in rows]) + "\n", encoding="utf-8")
    return labels


def test_read_labels_accepts_indices_and_names(tmp_path):
    labels = photos(tmp_path, [("a.jpg", "3"), ("sub/b.png", "Sad"), ("c.jpg", " 6 ")])
    items = read_labels(labels)
    assert [(i.path.name, i.label) for i in items] == [("a.jpg", 3), ("b.png", 4), ("c.jpg", 6)]
    assert items[1].path == tmp_path / "sub" / "b.png"


@pytest.mark.parametrize(
    ("rows", "header", "words"),
    [
        ([("a.jpg", "7")], "image_path,labels", "labels.csv:2: label '7'"),
        ([("a.jpg", "smug")], "image_path,labels", "neither a class index"),
        ([("a.jpg", "3")], "path,emotion", "image_path and labels"),
        ([], "image_path,labels", "no labelled photos"),
    ],
)
def test_bad_labels_files_are_bad_input(tmp_path, rows, header, words):
    labels = photos(tmp_path, rows, header)
    with pytest.raises(BadInput, match=words):
        read_labels(labels)


def test_a_missing_photo_or_labels_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--labels", str(tmp_path / "absent.csv"), "--url", "http://gateway"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "labels file not found" in err and "absent.csv" in err

    labels = tmp_path / "labels.csv"
    labels.write_text("image_path,labels\nnot-there.jpg,3\n", encoding="utf-8")
    assert main(["--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "photo not found" in err


def test_unreachable_platform_is_one_line_and_exit_2(tmp_path, capsys):
    labels = photos(tmp_path, [("a.jpg", "3")])

    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    assert main(["--labels", str(labels), "--url", "http://127.0.0.1:1"], transport=httpx.MockTransport(refuse)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the platform" in err


def face(box, label, uncertain=False):
    scores = {name: 0.01 for name in CLASSES}
    scores[label] = 0.94
    return {"box": box, "label": label, "scores": scores, "detection_score": 0.9, "uncertain": uncertain}


def test_largest_face_is_the_photos_prediction():
    faces = [face([0, 0, 30, 30], "sad"), face([50, 10, 80, 90], "happy", True), face([5, 5, 60, 20], "fear")]
    assert largest_face(faces)["label"] == "happy"
    assert largest_face([]) is None
    item = Item(path=None, label=3)
    assert outcome_of(item, {"faces": faces}) == Outcome(item, 3, True, faces=3)
    assert outcome_of(item, {"faces": [], "message": "no face was found in the image"}).predicted is None


def test_summary_accuracy_recall_and_uncertain():
    def o(true, predicted, uncertain=False):
        return Outcome(Item(path=None, label=true), predicted, uncertain)

    outcomes = [o(3, 3), o(3, 3), o(3, 4, True), o(0, 0, True), o(0, None), o(4, 4)]
    s = summarise(outcomes)
    assert (s.photos, s.correct, s.no_face) == (6, 4, 1)
    assert s.accuracy == pytest.approx(4 / 6) and s.accuracy_with_face == pytest.approx(4 / 5)
    assert s.per_class["happy"] == {"photos": 3, "correct": 2, "recall": pytest.approx(2 / 3)}
    assert s.per_class["angry"]["recall"] == 0.5 and s.per_class["sad"]["recall"] == 1.0
    assert "disgust" not in s.per_class
    assert s.mean_recall == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert s.confusion[0][len(CLASSES)] == 1 and s.confusion[3][4] == 1
    assert s.uncertain == {"faces": 2, "accuracy": 0.5, "accuracy_of_the_rest": 1.0}
    text = report(s)
    assert "accuracy: 66.7%" in text and "mean per-class recall: 72.2%" in text
    assert "happy" in text and "disgust" not in text.split("confusion")[0]


class FakeGateway:
    """Answers like services/gateway: register 201, token 200, predictions 201 with faces; the first
    upload after login finds its access token expired (401) and must refresh it; the first upload of
    d.jpg meets a platform that is still loading its model (503, retry at once)."""

    def __init__(self, answers: dict[str, list[dict]]) -> None:
        self.answers = answers
        self.modes: list[str] = []
        self.refreshed = 0
        self.expired_once = False
        self.access = "access-1"
        self.unavailable = {"d.jpg"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/api/v1/auth/register":
            body = json.loads(request.content)
            assert {"email", "password", "display_name"} == set(body)
            return httpx.Response(201, json={"id": "u1", "email": body["email"]})
        if path == "/api/v1/auth/token":
            assert b"username=" in request.content and b"password=" in request.content
            return httpx.Response(200, json={"access_token": self.access, "refresh_token": "refresh-1", "token_type": "bearer", "expires_in": 900})
        if path == "/api/v1/auth/refresh":
            assert json.loads(request.content) == {"refresh_token": "refresh-1"}
            self.refreshed += 1
            self.access = "access-2"
            return httpx.Response(200, json={"access_token": "access-2", "refresh_token": "refresh-2", "token_type": "bearer", "expires_in": 900})
        if path == "/api/v1/predictions" and request.method == "POST":
            if not self.expired_once:
                self.expired_once = True
                return httpx.Response(401, json={"detail": "invalid access token: expired"})
            assert request.headers["authorization"] == f"Bearer {self.access}"
            body = request.content
            mode = body.split(b'name="mode"\r\n\r\n')[1].split(b"\r\n")[0].decode()
            self.modes.append(mode)
            name = body.split(b'filename="')[1].split(b'"')[0].decode()
            if name in self.unavailable:
                self.unavailable.discard(name)
                return httpx.Response(503, json={"detail": "no model is deployed yet"}, headers={"Retry-After": "0"})
            return httpx.Response(201, json={"id": name, "faces": self.answers[name], "model": {"name": "fer", "version": 3}, "message": ""})
        return httpx.Response(404, json={"detail": "not found"})


def test_a_run_against_a_fake_gateway(tmp_path, capsys):
    labels = photos(tmp_path, [("a.jpg", "3"), ("b.jpg", "4"), ("c.jpg", "0"), ("d.jpg", "5")])
    gateway = FakeGateway({
        "a.jpg": [face([0, 0, 10, 10], "sad"), face([0, 0, 50, 50], "happy")],  # the largest face is right
        "b.jpg": [face([0, 0, 40, 40], "sad", True)],
        "c.jpg": [],  # no face: wrong
        "d.jpg": [face([0, 0, 40, 40], "fear")],
    })
    out = tmp_path / "figures.json"
    code = main(["--labels", str(labels), "--url", "http://gateway", "--mode", "face", "--concurrency", "2",
                 "--json", str(out), "--tag", "align on"], transport=httpx.MockTransport(gateway))
    assert code == 0
    printed = capsys.readouterr().out
    assert "4/4" in printed and "model: fer version 3" in printed
    assert "accuracy: 50.0%" in printed and "no face found: 1" in printed
    assert gateway.modes == ["face"] * 5 and gateway.refreshed == 1 and not gateway.unavailable  # d.jpg retried
    figures = json.loads(out.read_text())
    assert figures["correct"] == 2 and figures["per_class"]["happy"]["recall"] == 1.0 and figures["extra"]["tag"] == "align on"
    assert sorted(w["photo"] for w in figures["extra"]["wrong"]) == ["c.jpg", "d.jpg"]
    assert figures["uncertain"]["faces"] == 1

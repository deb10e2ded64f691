"""Upload validation and conversion (ferkit.images): refused with the right status, or converted."""
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ferkit import images
from ferkit.limits import IMAGE_MAX_PIXELS


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


ASTRONAUT = Image.fromarray(skdata.astronaut())


@pytest.mark.parametrize(
    ("data", "status", "word"),
    [
        (b"", 422, "empty"),
        (b"hello, world" * 20, 415, "not an image"),
        (encode(ASTRONAUT, "PDF"), 415, "not an image"),
        (encode(Image.new("L", (7_000, 7_000)), "PNG"), 413, "pixels allowed"),
        (encode(Image.new("L", (13_000, 8)), "PNG"), 422, "exceed"),
        (encode(Image.new("L", (4, 400)), "PNG"), 422, "at least"),
    ],
    ids=["empty", "text", "pdf", "bomb", "too-wide", "too-thin"],
)
def test_refused_before_decoding(data, status, word):
    for check in (images.probe, images.decode):
        with pytest.raises(images.ImageError) as caught:
            check(data)
        assert caught.value.status == status and word in str(caught.value)


def test_size_limit_and_pillows_own_bomb_guard():
    with pytest.raises(images.ImageError) as caught:
        images.probe(b"x" * 101, images.ImageLimits(max_bytes=100))
    assert caught.value.status == 413
    # Above Pillow's own limit (2 x MAX_IMAGE_PIXELS) open() itself refuses: still a 413, never a crash.
    huge = encode(Image.new("1", (16_000, 12_000)), "PNG")
    with pytest.raises(images.ImageError) as caught:
        images.probe(huge, images.ImageLimits(max_pixels=10**12, max_side=10**6))
    assert caught.value.status == 413


def test_the_pixel_limit_admits_a_24_megapixel_phone_photo_and_names_itself():
    assert images.probe(encode(Image.new("L", (5712, 4284)), "PNG")).width == 5712
    with pytest.raises(images.ImageError) as caught:
        images.probe(encode(Image.new("L", (6000, 4500)), "PNG"))
    assert caught.value.status == 413
    assert str(caught.value) == f"the image is 6000x4500 = 27000000 pixels, more than the {IMAGE_MAX_PIXELS} pixels allowed"


def test_truncated_passes_the_header_check_but_not_the_decode():
    jpeg = encode(ASTRONAUT, "JPEG")
    half = jpeg[: len(jpeg) // 2]
    assert images.probe(half).format == "JPEG"
    with pytest.raises(images.ImageError) as caught:
        images.decode(half)
    assert caught.value.status == 422 and "truncated" in str(caught.value)


def test_multi_frame_refused_single_frame_gif_accepted():
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(images.ImageError, match="3 frames"):
        images.probe(animated.getvalue())
    assert images.decode(encode(frames[0], "GIF")).rgb.shape == (32, 32, 3)


def test_modes_are_converted_to_8bit_rgb():
    grey = np.asarray(ASTRONAUT.convert("L"))
    grey16 = Image.fromarray(grey.astype(np.uint16) * 257)
    rgba = ASTRONAUT.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: white, as a browser shows it
    for image, fmt in [
        (ASTRONAUT.convert("CMYK"), "JPEG"),
        (ASTRONAUT.convert("CMYK"), "TIFF"),
        (grey16, "PNG"),
        (ASTRONAUT.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        (ASTRONAUT.convert("LA"), "PNG"),
        (ASTRONAUT.convert("1"), "BMP"),
        (ASTRONAUT, "WEBP"),
    ]:
        decoded = images.decode(encode(image, fmt))
        assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (512, 512, 3), (image.mode, fmt)
    # 16-bit grey keeps its values (scaled to 8 bits), not clipped to white.
    np.testing.assert_allclose(images.decode(encode(grey16, "PNG")).rgb[..., 0], grey, atol=1)
    assert (images.decode(encode(rgba, "PNG")).rgb == 255).all()


def test_exif_orientation_is_applied():
    wide = ASTRONAUT.resize((400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the camera held upright
    decoded = images.decode(encode(wide, "JPEG", exif=exif))
    assert (decoded.width, decoded.height) == (200, 400)
    assert decoded.info.content_type == "image/jpeg"


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_jpeg_is_decoded_reduced_with_its_scale(orientation):
    photo = ASTRONAUT.resize((4000, 3000))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(photo, "JPEG", exif=exif, quality=90)
    decoded = images.decode(data, max_side=1024)
    upright = (4000, 3000) if orientation == 1 else (3000, 4000)
    assert (decoded.width, decoded.height) == upright
    assert decoded.scale == pytest.approx(1024 / 4000)
    assert decoded.rgb.shape == (round(upright[1] * decoded.scale), round(upright[0] * decoded.scale), 3)
    # The same picture as a full decode scaled down (draft mode, not a crop or a different frame).
    full = np.asarray(Image.fromarray(images.decode(data).rgb).resize(decoded.rgb.shape[1::-1], Image.Resampling.BILINEAR))
    assert np.abs(full.astype(int) - decoded.rgb).mean() < 6


def test_a_small_image_is_not_scaled():
    decoded = images.decode(encode(ASTRONAUT, "PNG"), max_side=1024)
    assert decoded.scale == 1.0 and decoded.rgb.shape == (512, 512, 3) and (decoded.width, decoded.height) == (512, 512)

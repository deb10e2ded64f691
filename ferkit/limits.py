"""What the platform accepts from users, declared once: the gateway checks these first, the services
again (they may be called directly), and the browser reads them from GET /api/v1/limits."""

# An upload: one photo. Phones write 2-8 MB JPEGs; 10 MB leaves room without inviting abuse.
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
# 25 MP: the largest photo a phone writes by default (24 MP modes, e.g. 5712x4284 = 24.5 MP; 48-200 MP
# sensors bin to 12-24 MP) and 24 MP cameras (6000x4000). A face needs far less (detection runs at
# 800 px) and a PNG costs decode time by the pixel (a flat 40 MP one took ~3 s of CPU); a file that
# claims more is refused from its header. JPEGs are decoded reduced anyway (images.decode, max_side).
IMAGE_MAX_PIXELS = 25_000_000
IMAGE_MAX_SIDE = 12_000
IMAGE_MIN_SIDE = 8
# The free-text notes kept with a result and printed in its reports.
NOTES_MAX_CHARS = 2000

"""What the platform accepts from users, declared once: the gateway checks these first, the services
again (they may be called directly), and the browser reads them from GET /api/v1/limits."""

# An upload: one photo. Phones write 2-8 MB JPEGs; 10 MB leaves room without inviting abuse.
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
# 40 MP covers every phone camera; a small file that claims more is a decompression bomb.
IMAGE_MAX_PIXELS = 40_000_000
IMAGE_MAX_SIDE = 12_000
IMAGE_MIN_SIDE = 8
# The free-text notes kept with a result and printed in its reports.
NOTES_MAX_CHARS = 2000

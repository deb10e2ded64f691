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

# A batch: many photos in one request. 200 photos is a folder a person scores at once; the bytes are
# bounded below one gRPC message (64 MiB) because the gateway sends the whole batch to the reports
# service in one CreateBatch call.
BATCH_MAX_PHOTOS = 200
BATCH_MAX_BYTES = 48 * 1024 * 1024
# A ZIP of photos is read in memory, never unpacked to disk: at most this many entries (directories and
# skipped members count too, so a ZIP of a million empty names is refused from its directory), and no
# member may expand more than this many times its compressed size (JPEG and PNG barely compress; a
# ratio of 100 is a bomb, not a photo).
ARCHIVE_MAX_MEMBERS = 1000
ARCHIVE_MAX_RATIO = 100
# A video: 200 MiB holds ten minutes of a phone's 1080p recording at a modest bitrate; ten minutes of
# sampled frames is the longest the browser's timeline stays readable.
VIDEO_MAX_BYTES = 200 * 1024 * 1024
VIDEO_MAX_SECONDS = 600
# Frames sampled per second of video: expressions change over a few hundred milliseconds, so 4 per
# second follows them; 15 is the most a caller may ask (every second or so frame of a phone's 30 fps).
VIDEO_DEFAULT_FPS = 4.0
VIDEO_MAX_FPS = 15.0
# One live camera frame: a 1280x720 JPEG is ~100-300 KB; 2 MiB leaves room for a PNG.
LIVE_FRAME_MAX_BYTES = 2 * 1024 * 1024

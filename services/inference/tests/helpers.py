"""What several of the inference tests compare with."""
import re
import urllib.request


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / float(a[2] * a[3] + b[2] * b[3] - w * h)


def triton_counters(metrics_url: str, model: str, version: int) -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out = {}
    for name in ("nv_inference_request_success", "nv_inference_exec_count", "nv_inference_count"):
        match = re.search(rf'^{name}{{[^}}]*model="{model}"[^}}]*version="{version}"[^}}]*}} (\S+)$', text, re.M)
        assert match, f"{name} for {model}/{version} missing from Triton's metrics"
        out[name] = float(match.group(1))
    return out

"""Item 6a of issue 12: what a client sends (paths, methods) cannot add metric series; the gateway here
is in front of the real auth service."""
import uuid

from prometheus_client.parser import text_string_to_metric_families

API = "/api/v1"


def http_series(text: str) -> set[tuple]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        if family.name.startswith("http_request")
        for sample in family.samples
    }


async def random_requests(gateway) -> None:
    """Each kind of request that used to make series of its own: unknown paths, a route whose path
    parameter shares its segment with a literal (`{name}:rollback`), unknown methods."""
    word = uuid.uuid4().hex
    await gateway.get(f"/{word}")
    await gateway.post(f"{API}/{word}/{word}:rollback")
    await gateway.post(f"{API}/models/{word}:rollback")
    await gateway.post(f"{API}/models/{word}/versions/7:promote")
    await gateway.request(word[:8].upper(), f"{API}/users/me")
    await gateway.request("PUT", f"{API}/predictions/{word}")


async def test_fifty_random_requests_add_no_series(gateway):
    await gateway.get("/metrics")  # the scrape's own series
    await random_requests(gateway)
    before = http_series((await gateway.get("/metrics")).text)
    for _ in range(50):
        await random_requests(gateway)
    after = http_series((await gateway.get("/metrics")).text)
    assert after == before, after - before
    labels = {dict(s[1]).get("route") for s in after}
    assert "unmatched" in labels and f"{API}/models/{{name}}:rollback" in labels
    assert {dict(s[1]).get("method") for s in after} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other", None}

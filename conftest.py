"""Fixtures shared by every test directory; each area keeps its own in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.auth",
    "tests.fixtures.reports",
    "tests.fixtures.triton",
    "tests.fixtures.inference",
]

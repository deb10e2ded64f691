"""The deploy tooling scripts: valid shell, and the helm in use is the pinned, checksummed build."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.deploy.tools import REPO, check, tool

SCRIPTS = ["scripts/install-deploy-tools.sh", "scripts/render-k8s.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script: str) -> None:
    check(["bash", "-n", str(REPO / script)])


def test_helm_is_the_pinned_build() -> None:
    pinned = re.search(r'HELM_SHA256="([0-9a-f]{64})"', (REPO / "scripts" / "install-deploy-tools.sh").read_text()).group(1)
    helm = tool("helm")
    if helm.startswith(str(REPO / ".tools")):  # a helm from elsewhere on PATH is the user's choice
        assert hashlib.sha256(open(helm, "rb").read()).hexdigest() == pinned
    assert "v3." in check([helm, "version", "--short"])


def test_promtool_understands_rule_tests() -> None:
    assert "test" in check([tool("promtool"), "--help"])

"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.aws import local_aws


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """The local AWS endpoint (moto server), one per test module."""
    with local_aws() as url:
        yield url

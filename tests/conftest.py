from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.accounts",
    "tests.fixtures.services",
    "tests.fixtures.files",
    "tests.fixtures.enrichment",
]

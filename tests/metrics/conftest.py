import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every metrics test runs with one torch thread (tests/conftest.py)."""
    yield

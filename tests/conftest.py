"""Fixtures of the deployment tests: the model in each configuration, and an input."""
import pytest

from deploy_models import CHANNELS, CONFIG_IDS, CONFIGS, make_model, ramp


@pytest.fixture(params=CONFIGS, ids=CONFIG_IDS)
def model(request):
    return make_model(*request.param)


@pytest.fixture
def example():
    return ramp(2, CHANNELS, 5, 6)

"""One contract, every adapter: each provider block against its own simulator goes through the same
cases (auth refused, 429 with Retry-After, 5xx, moderation, bad output, deadline and cancel), and
its key appears in no message, log line or repr. Provider-specific behaviour stays in each
provider's own test module; this one holds what every adapter must share."""

from __future__ import annotations

import logging
import time

import pytest

from blocks.catalogue import load_catalogue
from blocks.providers import GenerationRequest
from blocks.registry import provider_class
from blocks.remote import ProviderError
from simulators.base import Fault
from simulators.serve import SIMULATORS, client_settings, start_simulator

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each case pays for its own creates

PROVIDERS = sorted(SIMULATORS)
# Adapters whose API cancels a running task (Runway DELETE /v1/tasks, OpenAI DELETE /v1/videos);
# fal and Seedance cancel only queued requests (fal answers 400 ALREADY_COMPLETED once one runs),
# Kling has no cancel endpoint, Veo's operations are not cancellable through the Gemini API and
# LTX answers synchronously.
CANCELS_RUNNING = {"runway", "sora"}


@pytest.fixture(scope="module", params=PROVIDERS)
def sim(request):
    sim = start_simulator(request.param, latency=0.2, render_height=48)
    sim.provider = request.param
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _clean(sim):
    sim.faults.clear()
    sim.latency = 0.2
    yield
    sim.faults.clear()


def adapter(sim, **overrides):
    settings = {**client_settings(sim.provider, sim), "first_poll": 0.05, "poll_interval": 0.1,
                "max_retries": 2, **overrides}
    return provider_class(sim.provider)(**settings)


def secrets_of(sim) -> list[str]:
    return [s for s in (getattr(sim, "api_key", None), getattr(sim, "access_key", None),
                        getattr(sim, "secret_key", None)) if s]


def request_for(provider: str, seed: int = 1) -> GenerationRequest:
    """The provider's first text-to-video model at its shortest length, 16:9 where it has it."""
    entry = next(m for m in load_catalogue().models_of(provider) if m.text_to_video)
    duration = entry.duration_range[0] if entry.duration_range else entry.durations[0]
    ratio = "16:9" if "16:9" in entry.ratios else entry.ratios[0]
    return GenerationRequest(prompt="a paper boat drifts on a puddle; static camera", model=entry.model,
                             seed=seed, duration=duration, fps=entry.fps, aspect_ratio=ratio)


def refused(sim, tmp_path, **overrides) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, **overrides).generate(request_for(sim.provider), tmp_path / "take.mp4")
    for secret in secrets_of(sim):
        assert secret not in str(caught.value) and secret not in repr(caught.value)
    return caught.value


def test_a_refused_key_fails_at_once_without_a_task(sim, tmp_path):
    made = sim.creates
    wrong = {"access_key": "ak-wrong-0000", "secret_key": "sk-wrong-0000"} if sim.provider == "kling" else \
        {"api_key": "wrong-key-0000-0000-0000"}
    error = refused(sim, tmp_path, **wrong)
    assert error.kind == "auth" and not error.transient and sim.creates == made
    assert "wrong-key-0000-0000-0000" not in str(error) and "sk-wrong-0000" not in str(error)


@pytest.mark.parametrize("fault, seed", [(Fault("rate_limit", on="create", retry_after=0.2), 10),
                                         (Fault("server", on="create", status=503, retry_after=0.1), 11),
                                         (Fault("server", on="create", status=500), 12)], ids=["429", "503", "500"])
def test_a_throttled_or_failing_create_is_retried_into_one_task(sim, tmp_path, fault, seed):
    # a seed per case: Kling would otherwise find the earlier case's task by its external_task_id
    made, sent = sim.creates, sim.count("create")
    sim.inject(fault)
    started = time.monotonic()
    result = adapter(sim).generate(request_for(sim.provider, seed=seed), tmp_path / "take.mp4")
    assert result.path.stat().st_size > 0
    assert sim.creates - made == 1 and sim.count("create") - sent == 2  # the refused one, then the task
    # Retry-After is honoured (a lower bound on behaviour, not a speed target)
    assert time.monotonic() - started >= (fault.retry_after or 0)


def test_moderation_is_final_with_one_create(sim, tmp_path):
    sent = sim.count("create")
    sim.inject(Fault("reject", failure="moderation"))
    error = refused(sim, tmp_path)
    assert error.kind == "moderation" and not error.transient and sim.count("create") - sent == 1


def test_an_output_that_never_decodes_is_bad_output(sim, tmp_path):
    sim.inject(Fault("corrupt", times=20))
    error = refused(sim, tmp_path, max_retries=1)
    assert error.kind == "bad_output"


def test_a_take_past_its_deadline_times_out_and_running_tasks_are_cancelled(sim, tmp_path):
    sim.latency = 5.0
    before = set(sim.tasks)
    error = refused(sim, tmp_path, generation_timeout=0.4)
    assert error.kind == "timeout"
    new = [sim.tasks[key] for key in set(sim.tasks) - before]
    if sim.provider in CANCELS_RUNNING:
        assert new and all(task.cancelled for task in new)


def test_the_key_is_in_no_log_line_or_repr(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sim.inject(Fault("rate_limit", on="create", retry_after=0.1))
    provider = adapter(sim)
    provider.generate(request_for(sim.provider, seed=3), tmp_path / "take.mp4")
    for text in (caplog.text, repr(provider), str(provider), provider.model_dump_json()):
        for secret in secrets_of(sim):
            assert secret not in text

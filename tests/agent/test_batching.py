"""Cross-task batching: the compatibility key and batch selection (pure), then the agent against moto and
the fake runtime's mixed-batch route (real HTTP): per-task outcomes, failure and cancel isolation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from easel.contract import QueueMessage, TaskStatus, parse_input
from easel.contract.tasks import GenerationInput
from queue_agent.agent import Agent
from queue_agent.batching import PER_TASK, batch_key, images_of, take_batch
from tests.agent.conftest import Stack, wait_for

# -- the key (pure) ---------------------------------------------------------------------------------------
BASE: dict[str, Any] = {
    "prompt": "a cat",
    "negative_prompt": "",
    "steps": 20,
    "width": 512,
    "height": 512,
    "cfg_scale": 7.0,
    "sampler_name": "Euler a",
    "seed": 1,
    "batch_size": 1,
    "loras": [{"name": "style", "weight": 0.5}],
}
# A value other than BASE's for every input field that must match (every field but the per-task ones).
OTHER: dict[str, Any] = {
    "steps": 21,
    "width": 576,
    "height": 448,
    "cfg_scale": 6.5,
    "sampler_name": "DDIM",
    "denoising_strength": 0.5,
    "loras": [{"name": "style", "weight": 0.6}],
    "output_format": "webp",
    "jpeg_quality": 90,
    "mask_blur": 8,
    "inpainting_fill": 1,
    "inpaint_full_res": False,
    "inpaint_full_res_padding": 32,
    "inpainting_mask_invert": 1,
    "enable_hr": True,
    "hr_scale": 1.5,
    "hr_resize_x": 640,
    "hr_resize_y": 640,
    "hr_upscaler": "Lanczos",
    "hr_second_pass_steps": 5,
    "hr_prompt": "a detailed dog",
    "hr_negative_prompt": "blurry",
    "hr_sampler_name": "DDIM",
    "controlnet": [{"model": "cn", "image": "s3://bucket/tenants/acme/edges.png"}],
}


def msg(
    *, tenant: str = "acme", model: str = "sd15", task_type: str = "text-to-image", **inp: Any
) -> QueueMessage:
    return QueueMessage(
        id="t",
        tenant=tenant,
        task_type=task_type,  # type: ignore[arg-type]
        model=model,
        runtime="sd15",
        priority="normal",  # type: ignore[arg-type]
        input=parse_input(task_type, {**BASE, **inp}),
        created_at=datetime.now(UTC),
    )


def key(m: QueueMessage, store_path: str = "sd15", names: dict[str, str] | None = None) -> Any:
    return batch_key(m, store_path=store_path, lora_names=names)


def test_what_each_task_owns_does_not_split_a_batch() -> None:
    a = msg()
    b = msg(prompt="a dog", negative_prompt="blurry", seed=99, batch_size=3, tenant="globex")
    assert key(a) is not None
    assert key(a) == key(b)
    assert images_of(b) == 3


def test_other_fields_are_covered_by_the_test() -> None:
    """Every input field is either per-task or has a differing value below (a new contract field fails
    here until it is classified)."""
    # Images to start from (init images, an inpainting mask) make an image-to-image task: never batched.
    assert set(GenerationInput.model_fields) - PER_TASK - {"init_images", "mask"} == set(OTHER)


@pytest.mark.parametrize("field", sorted(OTHER))
def test_any_other_field_differing_never_shares_a_batch(field: str) -> None:
    assert key(msg()) != key(msg(**{field: OTHER[field]}))


def test_model_store_path_lora_set_and_private_names_split_batches() -> None:
    assert key(msg()) != key(msg(model="other"))
    assert key(msg()) != key(msg(), store_path="sd15-v2")
    assert key(msg()) != key(msg(loras=[]))
    assert key(msg()) != key(msg(loras=[{"name": "style", "weight": 0.5}, {"name": "b", "weight": 0.5}]))
    # Same task LoRA name, private to two tenants: the runtime names differ, so do the keys.
    acme = key(msg(), names={"style": "acme/style"})
    globex = key(msg(tenant="globex"), names={"style": "globex/style"})
    public = key(msg())
    assert len({acme, globex, public}) == 3


def test_image_to_image_and_training_never_batch() -> None:
    assert key(msg(task_type="image-to-image", init_images=["s3://bucket/tenants/acme/in.png"])) is None
    training = QueueMessage(
        id="t",
        tenant="acme",
        task_type="train-lora",  # type: ignore[arg-type]
        model="sd15",
        runtime="sd15",
        priority="normal",  # type: ignore[arg-type]
        input=parse_input(
            "train-lora", {"images": ["s3://b/x.png"], "instance_prompt": "x", "output_name": "n"}
        ),
        created_at=datetime.now(UTC),
    )
    assert key(training) is None


def test_hires_controlnet_and_other_encodings_take_the_single_path() -> None:
    assert key(msg(enable_hr=True)) is None
    assert key(msg(controlnet=OTHER["controlnet"])) is None
    assert key(msg(output_format="jpeg")) is None
    assert key(msg(output_format="png")) is not None


def test_take_batch_keeps_order_key_and_image_budget() -> None:
    jobs = [("k", 1, "a"), ("j", 1, "b"), ("k", 3, "c"), ("k", 2, "d"), ("k", 1, "e")]

    def take(head_images: int, max_images: int, head_key: str | None = "k") -> list[str]:
        got = take_batch(
            head_key, head_images, jobs, key=lambda j: j[0], images=lambda j: j[1], max_images=max_images
        )
        return [j[2] for j in got]

    assert take(1, 4) == ["a", "d"]  # "b" other key; "c" does not fit (1+1+3 > 4) but "d" does
    assert take(1, 8) == ["a", "c", "d", "e"]
    assert take(4, 4) == []
    assert take(1, 4, head_key=None) == []


# -- the agent (moto + fake runtime over HTTP) -----------------------------------------------------------
BATCHING = {"agent_batch_max_images": 4, "agent_batch_max_wait_seconds": 2.0}


def buffered(agent: Agent) -> int:
    return len(agent.prefetcher._buffer)


def held_behind_blocker(stack: Stack, agent: Agent, ids: list[str], **inp: Any) -> None:
    """A blocker (other size, so it runs alone) holds the runtime while ``ids`` are received and prepared:
    the next batch is then exactly what is buffered, whatever the timing."""
    stack.runtime.control.hold_seconds = 30
    stack.submit("blocker", width=128)
    wait_for(lambda: stack.runtime.generation_calls(), 10, "blocker running")
    for i, tid in enumerate(ids):
        stack.submit(tid, prompt=f"prompt {tid}", seed=100 + i, **inp)
    wait_for(lambda: buffered(agent) == len(ids), 10, "tasks buffered")


@pytest.mark.integration
def test_compatible_tasks_generate_as_one_batch_with_their_own_outputs(stack: Stack) -> None:
    agent = stack.agent(stack.settings(**BATCHING))
    ids = ["b0", "b1", "b2", "b3"]
    with stack.running(agent):
        held_behind_blocker(stack, agent, ids[:3])
        stack.submit("b3", prompt="prompt b3", seed=103, batch_size=1)
        stack.submit("odd", steps=3)  # incompatible: runs alone
        wait_for(lambda: buffered(agent) == 4, 10, "all received")
        stack.runtime.control.hold_seconds = 0
        stack.runtime.release()
        for tid in [*ids, "odd", "blocker"]:
            stack.wait_result(tid, "succeeded")
    calls = stack.runtime.generation_calls()
    assert [c.path for c in calls] == ["txt2img", "txt2img-batch", "txt2img"]
    items = calls[1].body["items"]
    assert [i["prompt"] for i in items] == [f"prompt {t}" for t in ids]
    assert [i["seed"] for i in items] == [100, 101, 102, 103]
    assert calls[2].body["steps"] == 3
    for tid in ids:
        assert stack.objects(f"tenants/acme/tasks/{tid}/") == [f"tenants/acme/tasks/{tid}/0.png"]
        task = stack.task(tid)
        assert task.status == "succeeded" and task.attempts == 1
        # GPU time shared in proportion to images (1 of 4 each); predict is the batch's wall time.
        m = task.metrics
        assert m.gpu_seconds is not None and m.predict_seconds is not None
        assert m.gpu_seconds == pytest.approx(m.predict_seconds / 4, abs=2e-6)
        assert len(stack.results_for(tid)) == 1
    snap = agent.stats.snapshot()
    assert snap["outcomes"] == {"succeeded": 6}


@pytest.mark.integration
def test_a_lone_task_runs_at_once_without_waiting_for_a_batch(stack: Stack) -> None:
    agent = stack.agent(stack.settings(agent_batch_max_images=4, agent_batch_max_wait_seconds=10.0))
    with stack.running(agent):
        stack.submit("alone")
        stack.wait_result("alone", "succeeded", timeout=8)  # far below the 10 s wait: it did not wait
    assert [c.path for c in stack.runtime.generation_calls()] == ["txt2img"]


@pytest.mark.integration
def test_one_members_bad_input_fails_only_that_task(stack: Stack) -> None:
    stack.runtime.control.public_loras = {"style"}
    agent = stack.agent(stack.settings(**BATCHING))
    with stack.running(agent):
        held_behind_blocker(stack, agent, ["g0", "g1"], loras=[{"name": "style", "weight": 0.5}])
        stack.submit("bad", seed=7, loras=[{"name": "missing", "weight": 0.5}])
        stack.submit("g2", seed=8, loras=[{"name": "style", "weight": 0.5}])
        wait_for(lambda: buffered(agent) == 4, 10, "all received")
        stack.runtime.control.hold_seconds = 0
        stack.runtime.release()
        for tid in ("g0", "g1", "g2"):
            stack.wait_result(tid, "succeeded")
        failed = stack.wait_result("bad", "failed")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")
    assert failed["error"]["code"] == "lora_missing"
    batches = [c for c in stack.runtime.generation_calls() if c.path == "txt2img-batch"]
    assert len(batches) == 1 and len(batches[0].body["items"]) == 3  # g0, g1, g2: "bad" has other LoRAs
    assert stack.objects("tenants/acme/tasks/bad/") == []


@pytest.mark.integration
def test_a_member_failing_inside_the_batch_fails_alone(stack: Stack) -> None:
    """The runtime refuses one item of the batch (its LoRA vanished): that task fails, the rest succeed."""
    stack.runtime.control.public_loras = {"style"}
    agent = stack.agent(stack.settings(**BATCHING))
    with stack.running(agent):
        held_behind_blocker(stack, agent, ["f0", "f1", "f2"], loras=[{"name": "style", "weight": 0.5}])
        # The adapter disappears from the runtime while the tasks wait: every item is refused, each alone.
        stack.runtime.control.public_loras = set()
        stack.runtime.control.hold_seconds = 0
        stack.runtime.release()
        results = [stack.wait_result(t, "failed") for t in ("f0", "f1", "f2")]
        stack.runtime.control.public_loras = {"style"}
        stack.submit("ok")
        stack.wait_result("ok", "succeeded")
    assert {r["error"]["code"] for r in results} == {"lora_missing"}


@pytest.mark.integration
def test_whole_batch_error_settles_each_member_by_its_own_receive_count(stack: Stack) -> None:
    agent = stack.agent(stack.settings(**BATCHING))
    with stack.running(agent):
        held_behind_blocker(stack, agent, ["r0", "r1"])
        stack.runtime.control.fail_next = [503]  # the batch call: busy, retryable for each member
        stack.runtime.control.hold_seconds = 0
        stack.runtime.release()
        for tid in ("r0", "r1"):
            stack.wait_result(tid, "succeeded", timeout=20)
    snap = agent.stats.snapshot()
    assert snap["retried"] == 2
    assert all(stack.task(t).attempts == 2 for t in ("r0", "r1"))


@pytest.mark.integration
def test_cancel_of_one_member_drops_only_its_outputs_and_never_interrupts(stack: Stack) -> None:
    agent = stack.agent(stack.settings(**BATCHING))
    ids = ["c0", "c1", "c2"]
    with stack.running(agent):
        held_behind_blocker(stack, agent, ids)
        stack.runtime.release()  # the blocker ends; the batch starts and is held
        wait_for(lambda: len(stack.runtime.generation_calls()) == 2, 10, "batch running")
        for tid in ids:
            stack.wait_status(tid, "processing")
        stack.store.transition("acme", "c1", TaskStatus.CANCELED)  # what the API's cancel does
        wait_for(
            lambda: any(
                j.message.id == "c1" and j.cancel_requested.is_set() for j in agent.executor._running
            ),
            5,
            "the agent saw the cancel",
        )
        assert stack.runtime.interrupts == 0
        stack.runtime.control.hold_seconds = 0
        stack.runtime.release()
        canceled = stack.wait_result("c1", "canceled")
        for tid in ("c0", "c2"):
            stack.wait_result(tid, "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")
    assert stack.runtime.interrupts == 0
    assert canceled["output"] is None
    assert stack.objects("tenants/acme/tasks/c1/") == []
    assert stack.objects("tenants/acme/tasks/c0/") == ["tenants/acme/tasks/c0/0.png"]
    assert len(stack.results_for("c1")) == 1


@pytest.mark.integration
def test_cancel_of_every_member_interrupts_the_batch(stack: Stack) -> None:
    agent = stack.agent(stack.settings(**BATCHING))
    ids = ["x0", "x1"]
    with stack.running(agent):
        held_behind_blocker(stack, agent, ids)
        stack.runtime.release()
        wait_for(lambda: len(stack.runtime.generation_calls()) == 2, 10, "batch running")
        for tid in ids:
            stack.wait_status(tid, "processing")
        stack.store.transition("acme", "x0", TaskStatus.CANCELED)
        wait_for(
            lambda: any(
                j.message.id == "x0" and j.cancel_requested.is_set() for j in agent.executor._running
            ),
            5,
            "the agent saw the first cancel",
        )
        assert stack.runtime.interrupts == 0
        stack.store.transition("acme", "x1", TaskStatus.CANCELED)
        for tid in ids:
            stack.wait_result(tid, "canceled")
        assert stack.runtime.interrupts >= 1
        assert stack.runtime.generation_calls()[1].interrupted
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")
    for tid in ids:
        assert stack.objects(f"tenants/acme/tasks/{tid}/") == []

"""The serial baseline: a queue agent in the style of the stable-diffusion-on-eks sample's.

Its structure follows aws-samples/stable-diffusion-on-eks ``src/backend/queue_agent/src/main.py`` and
``runtimes/sdwebui.py`` (written anew here, not copied): one message at a time, strictly in sequence:

    receive one (long poll)  ->  (dynamic model: GET options, switch)  ->  download inputs
    ->  POST txt2img (requests session with retries)  ->  decode images  ->  upload each image and the
    ``.out`` JSON to S3  ->  publish the result to SNS  ->  delete the message  ->  repeat

boto3 *resources* (``Queue``, ``Topic``, ``Bucket``) as in the sample; configured by the sample's
environment variables (``SQS_QUEUE_URL``, ``SNS_TOPIC_ARN``, ``S3_BUCKET``, ``API_BASE_URL``,
``DYNAMIC_SD_MODEL``), read in :func:`main`. It reads Easel's queue message (the lane queues carry it raw)
and does not touch the tasks table (the sample has none), so per task it makes fewer AWS calls than Easel's
agent: the comparison is, if anything, kind to the baseline.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from requests.adapters import HTTPAdapter, Retry

log = logging.getLogger("queue-agent")
SQS_WAIT_TIME_SECONDS = 20
REQUESTS_TIMEOUT_SECONDS = 300


@dataclass
class Env:
    queue_url: str
    topic_arn: str
    bucket: str
    api_base_url: str
    dynamic_sd_model: bool

    @classmethod
    def read(cls) -> Env:
        return cls(
            queue_url=os.environ["SQS_QUEUE_URL"],
            topic_arn=os.environ["SNS_TOPIC_ARN"],
            bucket=os.environ["S3_BUCKET"],
            api_base_url=os.environ.get("API_BASE_URL", "http://localhost:8080/sdapi/v1/"),
            dynamic_sd_model=os.environ.get("DYNAMIC_SD_MODEL", "false").lower() != "false",
        )


class SdWebUi:
    """The sample's ``runtimes/sdwebui.py``: a requests session with retries against the WebUI API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        retries = Retry(total=3, connect=100, backoff_factor=0.1, allowed_methods=["GET", "POST"])
        self.http.mount("http://", HTTPAdapter(max_retries=retries))

    def invoke(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        if body is None:
            response = self.http.get(url, timeout=(1, REQUESTS_TIMEOUT_SECONDS))
        else:
            response = self.http.post(url, json=body, timeout=(1, REQUESTS_TIMEOUT_SECONDS))
        response.raise_for_status()
        return response.json()

    def check_readiness(self) -> None:
        while True:
            try:
                opts = self.invoke("options")
                log.info("Service is ready. Init model is: %s", opts.get("sd_model_checkpoint"))
                return
            except requests.RequestException:
                import time

                time.sleep(1)

    def switch_model(self, name: str) -> str:
        current = self.invoke("options")["sd_model_checkpoint"]
        if name != current:
            self.invoke("options", {"sd_model_checkpoint": name})
        return name

    def handler(
        self, task_type: str, task_id: str, payload: dict[str, Any], dynamic: bool, s3: Any
    ) -> dict[str, Any]:
        response: dict[str, Any] = {}
        try:
            log.info("Start process %s task with ID: %s", task_type, task_id)
            if dynamic:
                self.switch_model(payload["model"])
            body = dict(payload["input"])
            if body.get("init_images"):  # download inputs
                body["init_images"] = [
                    base64.b64encode(_download(s3, u)).decode() for u in body["init_images"]
                ]
            endpoint = "txt2img" if task_type == "text-to-image" else "img2img"
            result = self.invoke(endpoint, body)
            images = [base64.b64decode(i) for i in result.get("images", [])]
            log.info("Received %d images", len(images))
            parameters = dict(result.get("parameters", {}))
            parameters["id_task"] = task_id
            parameters["image_seed"] = ",".join(str(x) for x in json.loads(result["info"])["all_seeds"])
            response = {"success": True, "image": images, "content": json.dumps({"parameters": parameters})}
            log.info("End process %s task with ID: %s", task_type, task_id)
        except Exception as exc:  # the sample turns every failure into a failed result
            log.error("%s task with ID: %s finished with error", task_type, task_id)
            response = {"success": False, "content": json.dumps({"error_msg": repr(exc)})}
        return response


def _download(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = s3.Object(bucket, key).get()["Body"].read()
    return body


def _upload(s3: Any, data: bytes, bucket: str, prefix: str, name: str, ext: str) -> str:
    content_type = "application/json" if ext == ".out" else "image/png"
    log.info("Uploading s3://%s/%s/%s%s", bucket, prefix, name, ext)
    s3.Bucket(bucket).put_object(Body=data, Key=f"{prefix}/{name}{ext}", ContentType=content_type)
    return f"s3://{bucket}/{prefix}/{name}{ext}"


class Agent:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.shutdown = False
        self.sqs = boto3.resource("sqs")
        self.sns = boto3.resource("sns")
        self.s3 = boto3.resource("s3")
        self.runtime = SdWebUi(env.api_base_url)

    def run(self) -> None:
        queue = self.sqs.Queue(self.env.queue_url)
        topic = self.sns.Topic(self.env.topic_arn)
        self.runtime.check_readiness()
        while not self.shutdown:
            messages = queue.receive_messages(
                MaxNumberOfMessages=1,
                WaitTimeSeconds=SQS_WAIT_TIME_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            for message in messages:
                self.process(message, topic)

    def process(self, message: Any, topic: Any) -> None:
        payload = json.loads(message.body)
        task_id = payload["id"]
        log.info("Received task %s, processing", task_id)
        prefix = f"tenants/{payload['tenant']}/tasks/{task_id}"
        response = self.runtime.handler(
            payload["task_type"], task_id, payload, self.env.dynamic_sd_model, self.s3
        )
        rand = str(uuid.uuid4())[0:4]
        result = []
        if response["success"]:
            for idx, image in enumerate(response["image"], start=1):
                result.append(
                    _upload(self.s3, image, self.env.bucket, prefix, f"{task_id}-{rand}-{idx}", ".png")
                )
        output_url = _upload(
            self.s3, response["content"].encode(), self.env.bucket, prefix, f"{task_id}-{rand}", ".out"
        )
        notification = {
            "id": task_id,
            "result": response["success"],
            "image_url": result,
            "output_url": output_url,
            "context": payload.get("context") or {},
        }
        topic.publish(Message=json.dumps(notification))
        message.delete()


def main() -> None:
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s"
    )
    agent = Agent(Env.read())

    def stop(_signum: int, _frame: Any) -> None:
        agent.shutdown = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    agent.run()


if __name__ == "__main__":
    main()

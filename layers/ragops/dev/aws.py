"""Creating the bucket, queues and notifications on a local S3/SQS endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ragops.dev.definitions import StackDefinition

LOCAL_REGION = "us-east-1"
BUCKET = "ragops-documents"
QUEUE = "ragops-ingest"
DEAD_LETTER_QUEUE = "ragops-ingest-dlq"
# Local retries come fast: the deployed queue waits 6 x the function timeout.
LOCAL_VISIBILITY_TIMEOUT = 20


@dataclass(frozen=True)
class LocalResources:
    endpoint_url: str | None
    bucket: str
    queue_url: str
    dead_letter_queue_url: str


def client(service: str, endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def create_resources(endpoint_url: str | None, definition: StackDefinition) -> LocalResources:
    """Idempotently create what template.yaml declares, on the local endpoint.

    `endpoint_url` None means boto3's default endpoint: moto's in-process `mock_aws`.
    """
    s3 = client("s3", endpoint_url)
    sqs = client("sqs", endpoint_url)
    # Versioning (template.yaml enables it) stays off: with it on, moto sends no event for
    # the delete marker a plain DELETE creates, so removals would never reach the queue.
    s3.create_bucket(Bucket=BUCKET)
    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=QUEUE,
        Attributes={
            "VisibilityTimeout": str(min(definition.visibility_timeout, LOCAL_VISIBILITY_TIMEOUT)),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": definition.max_receive_count}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    configurations = []
    for index, notification in enumerate(definition.notifications):
        rules = []
        if notification.prefix:
            rules.append({"Name": "prefix", "Value": notification.prefix})
        if notification.suffix:
            rules.append({"Name": "suffix", "Value": notification.suffix})
        config: dict[str, Any] = {
            "Id": f"ingest-{index}",
            "QueueArn": queue_arn,
            "Events": list(notification.events),
        }
        if rules:
            config["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.append(config)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": configurations}
    )
    return LocalResources(endpoint_url, BUCKET, queue_url, dlq_url)

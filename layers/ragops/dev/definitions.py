"""The bucket, queues and notifications of template.yaml, read for the local stack.

The local stack builds its moto resources from the same template that deploys to AWS, so
the two cannot drift apart: change the template and the local stack follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ragops.errors import ConfigurationError

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@dataclass(frozen=True)
class QueueNotification:
    events: tuple[str, ...]
    suffix: str | None
    prefix: str | None


@dataclass(frozen=True)
class StackDefinition:
    notifications: tuple[QueueNotification, ...]
    visibility_timeout: int
    max_receive_count: int


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads !Ref, !Sub, !GetAtt... as plain values: only literal settings are used here."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_definition(template: Path = TEMPLATE) -> StackDefinition:
    try:
        doc = yaml.load(template.read_text(), Loader=_CloudFormationLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {template}: {exc}") from exc
    resources = doc.get("Resources", {})
    parameters = doc.get("Parameters", {})
    try:
        bucket = resources["DocumentsBucket"]["Properties"]
        queue = resources["IngestQueue"]["Properties"]
    except KeyError as exc:
        raise ConfigurationError(f"{template} lacks {exc}") from exc
    notifications = []
    for config in bucket["NotificationConfiguration"]["QueueConfigurations"]:
        rules = {
            rule["Name"].lower(): rule["Value"]
            for rule in config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        }
        notifications.append(
            QueueNotification((config["Event"],), rules.get("suffix"), rules.get("prefix"))
        )
    redrive = queue.get("RedrivePolicy", {})
    return StackDefinition(
        notifications=tuple(notifications),
        visibility_timeout=int(_resolve(queue.get("VisibilityTimeout", 30), parameters)),
        max_receive_count=int(_resolve(redrive.get("maxReceiveCount", 5), parameters)),
    )


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]["Default"]
    return value

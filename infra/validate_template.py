"""Validate template.yaml offline: the real SAM transform, then cfn-lint on its output.

`sam validate --lint` lints the SAM template through cfn-lint's own approximation of the
transform and misses errors that only show in the real generated CloudFormation (a Lambda
timeout over 900 s passes it, for one). This script runs samtranslator itself and lints what
it produces. Exits non-zero and prints every finding when anything fails.

    python infra/validate_template.py [template.yaml]
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
REGION = "us-east-1"
# `sam build` fills in ImageUri after building the image; the transform needs one.
PLACEHOLDER_IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ragops:placeholder"


class _NoManagedPolicies:
    """Stands in for samtranslator's IAM lookup: the template names no AWS managed policy."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template as a dict, short-form intrinsics (!Ref, !Sub ...) included."""
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse(path.read_text())
    return template


@contextlib.contextmanager
def _default_region() -> Iterator[None]:
    """samtranslator takes AWS::Region from boto3's default region: give it one if unset."""
    if os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"):
        yield
        return
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        yield
    finally:
        del os.environ["AWS_DEFAULT_REGION"]


def transform_template(template: dict[str, Any]) -> dict[str, Any]:
    """Run the SAM transform locally, as CloudFormation would at deploy time."""
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(template)
    for resource in sam.get("Resources", {}).values():
        props = resource.get("Properties", {})
        is_function = resource.get("Type") == "AWS::Serverless::Function"
        if is_function and props.get("PackageType") == "Image":
            props.setdefault("ImageUri", PLACEHOLDER_IMAGE_URI)
    with _default_region():
        transformed: dict[str, Any] = transform(sam, {}, _NoManagedPolicies())
    return transformed


def lint(template: dict[str, Any]) -> list[str]:
    """cfn-lint findings (errors and warnings) on a CloudFormation template."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    matches = cfn_lint(json.dumps(template), config=ManualArgs(regions=[REGION]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches]


def validate(path: Path = TEMPLATE) -> list[str]:
    """Every problem found in the template; empty when it transforms and lints clean."""
    try:
        transformed = transform_template(load_template(path))
    except Exception as exc:  # the translator reports template errors as exceptions
        causes = getattr(exc, "causes", None) or [exc]
        return [f"SAM transform: {cause}" for cause in causes]
    return lint(transformed)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else TEMPLATE
    findings = validate(path)
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        print(f"{path}: {len(findings)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: SAM transform and cfn-lint passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

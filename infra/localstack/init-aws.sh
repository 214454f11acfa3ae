#!/bin/bash
# LocalStack runs this once S3 and SQS are up (docker-compose.yml mounts it into
# /etc/localstack/init/ready.d). It creates what template.yaml creates in AWS, under the names
# `ragops dev` uses: bucket ragops-documents notifies queue ragops-ingest, whose messages move
# to ragops-ingest-dlq after 5 failed receives.
set -euo pipefail

BUCKET=ragops-documents
QUEUE=ragops-ingest
DLQ=ragops-ingest-dlq
MAX_RECEIVE_COUNT=5
SUFFIXES=".txt .md .pdf .html"

queue_arn() {
  awslocal sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
    --query Attributes.QueueArn --output text
}

dlq_url=$(awslocal sqs create-queue --queue-name "$DLQ" \
  --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)
redrive=$(printf '{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"%s\\"}' \
  "$(queue_arn "$dlq_url")" "$MAX_RECEIVE_COUNT")
# Local retries come fast (as in `ragops dev`): the deployed queue waits 6 x the function timeout.
queue_url=$(awslocal sqs create-queue --queue-name "$QUEUE" \
  --attributes "{\"VisibilityTimeout\":\"20\",\"RedrivePolicy\":\"$redrive\"}" \
  --query QueueUrl --output text)

awslocal s3api create-bucket --bucket "$BUCKET" >/dev/null
# One configuration per event type and suffix, as in template.yaml.
target=$(queue_arn "$queue_url")
configs=""
for event in "s3:ObjectCreated:*" "s3:ObjectRemoved:*"; do
  for suffix in $SUFFIXES; do
    configs+="${configs:+,}{\"QueueArn\":\"$target\",\"Events\":[\"$event\"],"
    configs+="\"Filter\":{\"Key\":{\"FilterRules\":[{\"Name\":\"suffix\",\"Value\":\"$suffix\"}]}}}"
  done
done
awslocal s3api put-bucket-notification-configuration --bucket "$BUCKET" \
  --notification-configuration "{\"QueueConfigurations\":[$configs]}"

echo "ragops: s3://$BUCKET -> $queue_url (dead letters: $dlq_url)"

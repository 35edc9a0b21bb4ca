"""The AWS backend: one DynamoDB table and a KMS signing key. Nothing above this package sees boto3."""

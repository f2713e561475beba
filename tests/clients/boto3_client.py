"""Drives the QuickSight simulator with boto3, as an AWS user's script would.

Usage: boto3_client.py ENDPOINT_URL ACCOUNT_ID
Prints one JSON object describing what boto3 saw; tests/aws_clients.rs asserts on it.
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, account = sys.argv[1], sys.argv[2]
client = boto3.client(
    "quicksight",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDBOTO3",
    aws_secret_access_key="boto3-secret",
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)

ids, pages, token = [], 0, None
while True:
    kwargs = {"AwsAccountId": account, "Namespace": "default", "MaxResults": 100}
    if token:
        kwargs["NextToken"] = token
    page = client.list_self_upgrades(**kwargs)
    pages += 1
    ids += [d["UpgradeRequestId"] for d in page["SelfUpgradeRequestDetails"]]
    token = page.get("NextToken")
    if not token:
        break

first = ids[0]
approved = client.update_self_upgrade(
    AwsAccountId=account, Namespace="default", UpgradeRequestId=first, Action="APPROVE"
)["SelfUpgradeRequestDetail"]


def error_code(call):
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


again = error_code(
    lambda: client.update_self_upgrade(
        AwsAccountId=account, Namespace="default", UpgradeRequestId=first, Action="DENY"
    )
)
unknown = error_code(
    lambda: client.update_self_upgrade(
        AwsAccountId=account, Namespace="default", UpgradeRequestId="no-such-id", Action="APPROVE"
    )
)
bad_token = error_code(
    lambda: client.list_self_upgrades(AwsAccountId=account, Namespace="default", NextToken="forged")
)
client.update_self_upgrade_configuration(
    AwsAccountId=account, Namespace="default", SelfUpgradeStatus="AUTO_APPROVAL"
)
configuration = client.describe_self_upgrade_configuration(AwsAccountId=account, Namespace="default")

print(
    json.dumps(
        {
            "listed": len(ids),
            "distinct": len(set(ids)),
            "pages": pages,
            "approvedStatus": approved["RequestStatus"],
            "approvedCreationTime": approved["CreationTime"],
            "approveAgain": list(again),
            "unknownId": list(unknown),
            "badToken": list(bad_token),
            "configuration": configuration["SelfUpgradeConfiguration"]["SelfUpgradeStatus"],
        }
    )
)

"""Drives the QuickSight simulator with boto3, as an AWS user's script would.

Usage: boto3_client.py ENDPOINT_URL ACCOUNT_ID
Prints one JSON object describing what boto3 saw; tests/aws_clients.rs asserts on it.
"""
import datetime
import json
import sys
import time
import urllib.error
import urllib.request
from unittest import mock

import boto3
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

endpoint, account = sys.argv[1], sys.argv[2]
KEY, SECRET = "AKIDBOTO3", "boto3-secret"


def quicksight(region="us-east-1", secret=SECRET):
    return boto3.client(
        "quicksight",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=KEY,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


client = quicksight()

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
bad_mode = error_code(
    lambda: client.update_self_upgrade_configuration(
        AwsAccountId=account, Namespace="default", SelfUpgradeStatus="SOMETIMES"
    )
)
no_namespace = error_code(
    lambda: client.describe_self_upgrade_configuration(AwsAccountId=account, Namespace="nowhere")
)
# In AUTO_APPROVAL QuickSight approves the pending requests by itself (the test sets the
# simulator's delay below a second).
time.sleep(1)
after = client.list_self_upgrades(AwsAccountId=account, Namespace="default", MaxResults=2)
untouched = after["SelfUpgradeRequestDetails"][1]


def list_with(some_client):
    return error_code(lambda: some_client.list_self_upgrades(AwsAccountId=account, Namespace="default"))


def signed_for_service(service):
    """A listing signed by botocore's own SigV4 signer for another service's name."""
    url = f"{endpoint}/accounts/{account}/namespaces/default/self-upgrade-requests"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(KEY, SECRET), service, "us-east-1").add_auth(request)
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=dict(request.headers)))
    except urllib.error.HTTPError as error:
        return error.headers.get("x-amzn-ErrorType"), error.code
    return None, 200


def stale():
    """A listing signed ten minutes ago."""
    ten_minutes_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: ten_minutes_ago):
        return list_with(quicksight())


refused = {
    "wrongSecret": list(list_with(quicksight(secret="not-the-secret"))),
    "wrongRegion": list(list_with(quicksight(region="eu-west-1"))),
    "wrongService": list(signed_for_service("s3")),
    "staleDate": list(stale()),
}

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
            "badMode": list(bad_mode),
            "noNamespace": list(no_namespace),
            "autoApproved": [untouched["RequestStatus"], "lastUpdateAttemptTime" in untouched],
            "refused": refused,
        }
    )
)

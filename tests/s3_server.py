"""A real S3-protocol server on 127.0.0.1 for tests and benchmarks: moto's S3 (and IAM) in server
mode, on a free port, in a thread of this process, counting the HTTP requests it answers."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

REGION = "us-east-1"


class S3Server:
    """moto's server app behind werkzeug; `requests` counts requests by HTTP method. It takes
    any key until `checking_keys` makes it check signatures against an IAM user, as S3 does."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args: Any) -> None:
                pass

        app = DomainDispatcherApplication(create_backend_app)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

        def counting(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            if not environ.get("PATH_INFO", "").startswith("/moto-api"):
                with self._lock:
                    self.requests[environ["REQUEST_METHOD"]] += 1
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, counting, threaded=True, request_handler=Quiet)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def env(self) -> dict[str, str]:
        """The environment variables that point boto/s3fs at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION, **self.credentials}

    def client(self, service: str = "s3") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    @contextmanager
    def checking_keys(self) -> Iterator[dict[str, str]]:
        """While open, only the yielded key (an IAM user's, allowed all of S3) is accepted."""
        iam = self.client("iam")
        iam.create_user(UserName="spd")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="spd", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="spd")["AccessKey"]
        anyone = self.credentials
        self.credentials = {  # what `client` and `keys` use meanwhile
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        self._set_auth(b"0")  # from now on every request is authenticated
        try:
            yield dict(self.credentials)
        finally:
            self._set_auth(b"inf")  # (moto's setting is global to its process)
            self.credentials = anyone
            iam.delete_access_key(UserName="spd", AccessKeyId=key["AccessKeyId"])
            iam.delete_user_policy(UserName="spd", PolicyName="s3")
            iam.delete_user(UserName="spd")

    def _set_auth(self, unauthenticated_requests: bytes) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=unauthenticated_requests,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

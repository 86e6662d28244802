"""DOUBLE OF AWS: moto_server (the EC2/IAM/STS API peer from PyPI) with the
few EC2 behaviours the harness's twin tier needs and moto does not model,
each written from the AWS documentation cited beside it.  A pass against this
double proves what the real Terraform provider sends and stores, never what
real EC2 does (harness/src/doubles/moto.rs says which points only AWS settles).

Started by harness/src/doubles/moto.rs:

    python3 moto-ec2.py <call-log.jsonl> [role ...]

It listens on 127.0.0.1 (a free port), creates the IAM roles named on the
command line, then prints `harness-moto-ready <port>` on stdout.

Extensions (each one named in the double's call log as `double: ...`):
- RunInstances with InstanceMarketOptions.MarketType=spot creates the Spot
  Instance request EC2 creates for it (one-time or persistent, its
  interruption behaviour, max price, valid-until), fulfilled at once (moto
  has no capacity), and DescribeInstances names it (SpotInstanceRequestId),
  as EC2 does ("RunInstances ... InstanceMarketOptions", EC2 API reference;
  moto 5.2 sets only InstanceLifecycle=spot).
- CancelSpotInstanceRequests leaves the request describable in state
  `cancelled` (moto forgets it); AWS keeps cancelled requests visible.
- Stopping / starting the instance of a persistent request: request state
  `disabled` / status `instance-stopped-by-user`, then `active` /
  `fulfilled` (EC2 user guide, "State changes for a Spot request").
- Terminating the instance of a persistent request that is not cancelled:
  the request opens again (state `open`, status
  `instance-terminated-by-user`): EC2 would launch a new instance ("For
  persistent requests, terminating the instance causes a new instance to
  launch", Terminate a Spot Instance).
- ModifyInstanceAttribute InstanceType on a stopped Spot Instance is refused
  ("While a Spot Instance is stopped, you can modify some of its instance
  attributes, but not the instance type", EC2 user guide,
  interruption-behavior.html).  The error CODE is the double's guess.
- DescribeTags answers the tags of instances' root volumes before those of
  other volumes.  AWS documents no order; the provider merges the tags of
  every attached volume into one map (aws_instance volume_tags,
  readVolumeTags), so which volume's Name wins depends on it.  moto's order
  follows creation, which races in a Terraform apply; a fixed order makes
  that merge, and a template that relies on it, fail the same way every
  run.
- POST /_harness/spot/interrupt?instance=<id>&region=<r>: what EC2 does on a
  capacity interruption with behaviour `stop` (instance stopped, state reason
  Server.SpotInstanceShutdown, request `disabled` /
  `instance-stopped-no-capacity`); /_harness/spot/restart: what EC2 does
  when capacity returns (instance running, request `active` / `fulfilled`).
  Only EC2 can do either; no API call exists for them.
"""

import datetime
import io
import json
import sys
import threading
import urllib.parse

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from moto.backends import get_backend
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.instances import InstanceBackend, StateReason
from moto.ec2.models.tags import TagBackend
from moto.ec2.models.spot_requests import (
    LaunchSpecification,
    SpotInstanceRequest,
    SpotRequestBackend,
)
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.utils import random_spot_request_id
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

LOG_PATH = sys.argv[1]
ROLES = sys.argv[2:]
LOG_LOCK = threading.Lock()


def log(entry):
    with LOG_LOCK, open(LOG_PATH, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


class RunInstancesSpotRequest(SpotInstanceRequest):
    """The Spot Instance request EC2 creates for a spot RunInstances: the
    same model moto uses for RequestSpotInstances, linked to the instance
    RunInstances already launched (so it launches nothing itself)."""

    # moto's model registry keys models by their module's second component.
    __module__ = "moto.ec2.harness_double"

    def __init__(self, backend, instance, options):
        TaggedEC2Resource.__init__(self)
        self.ec2_backend = backend
        self.launch_specification = LaunchSpecification(
            kernel_id=None,
            ramdisk_id=None,
            image_id=instance.image_id,
            key_name=instance.key_name,
            instance_type=instance.instance_type,
            placement=instance.placement,
            monitored=False,
            subnet_id=instance.subnet_id,
        )
        self.id = random_spot_request_id()
        self.state = "active"
        self._status_code = "fulfilled"
        self.status_message = "Your spot request is fulfilled."
        # EC2 reports the on-demand price as the maximum when none was given.
        price = options.get("MaxPrice") or "0.041600"
        self.price = f"{float(price):.6f}"
        self.type = options.get("SpotInstanceType") or "one-time"
        self.valid_from = None
        until = options.get("ValidUntil")
        if until:
            self.valid_until = datetime.datetime.fromisoformat(str(until).replace("Z", "+00:00"))
        else:
            # "For a persistent request, the request remains active until the
            # ValidUntil date and time is reached. Otherwise, the request
            # remains active until you cancel it." (EC2 API reference,
            # SpotMarketOptions)
            self.valid_until = None
        self.launch_group = None
        self.availability_zone_group = None
        self.instance_interruption_behaviour = options.get("InstanceInterruptionBehavior") or "terminate"
        self.user_data = None
        self.spot_fleet_id = None
        self.launch_spec = None
        self.all_tags = {}
        self.instance = instance

    def set_status(self, state, code, message):
        self.state = state
        self._status_code = code
        self.status_message = message
        log({"double": "spot-request", "id": self.id, "state": state, "status": code})


def linked_request(backend, instance_id):
    for r in backend.spot_instance_requests.values():
        if isinstance(r, RunInstancesSpotRequest) and r.instance.id == instance_id:
            return r
    return None


_run_instances = InstanceResponse.run_instances


def run_instances(self):
    result = _run_instances(self)
    market = self._get_param("InstanceMarketOptions", {}) or {}
    if market.get("MarketType") == "spot":
        options = market.get("SpotOptions", {}) or {}
        for instance in result.result.instances:
            req = RunInstancesSpotRequest(self.ec2_backend, instance, options)
            self.ec2_backend.spot_instance_requests[req.id] = req
            instance.spot_instance_request_id = req.id
            log({"double": "spot request for RunInstances", "instance": instance.id, "id": req.id, "options": options})
    return result


InstanceResponse.run_instances = run_instances

_cancel = SpotRequestBackend.cancel_spot_instance_requests


def cancel_spot_instance_requests(self, request_ids):
    ours = [i for i in request_ids if isinstance(self.spot_instance_requests.get(i), RunInstancesSpotRequest)]
    rest = [i for i in request_ids if i not in ours]
    out = _cancel(self, rest) if rest else []
    for i in ours:
        r = self.spot_instance_requests[i]
        running = r.instance.is_running()
        r.set_status(
            "cancelled",
            "request-canceled-and-instance-running" if running else "canceled-before-fulfillment",
            "Spot Instance request canceled",
        )
        out.append(r)
    return out


SpotRequestBackend.cancel_spot_instance_requests = cancel_spot_instance_requests

_stop = InstanceBackend.stop_instances
_start = InstanceBackend.start_instances
_terminate = InstanceBackend.terminate_instances
_modify = InstanceBackend.modify_instance_attribute


def _persistent(backend, instance):
    r = linked_request(backend, instance.id)
    return r if r is not None and r.type == "persistent" and r.state != "cancelled" else None


def stop_instances(self, instance_ids):
    out = _stop(self, instance_ids)
    for instance, _ in out:
        r = _persistent(self, instance)
        if r is not None:
            r.set_status("disabled", "instance-stopped-by-user", "You stopped the Spot Instance.")
    return out


def start_instances(self, instance_ids):
    out = _start(self, instance_ids)
    for instance, _ in out:
        r = _persistent(self, instance)
        if r is not None:
            r.set_status("active", "fulfilled", "Your spot request is fulfilled.")
    return out


def terminate_instances(self, instance_ids):
    out = _terminate(self, instance_ids)
    for instance, _ in out:
        r = _persistent(self, instance)
        if r is not None:
            # EC2 would now launch a replacement for the still-open request.
            r.set_status("open", "instance-terminated-by-user", "The request opens again: EC2 launches a new Spot Instance")
    return out


def modify_instance_attribute(self, instance_id, key, value):
    instance = self.get_instance(instance_id)
    if key == "instance_type" and getattr(instance, "lifecycle", None) == "spot":
        log({"double": "refused ModifyInstanceAttribute InstanceType on a Spot Instance", "instance": instance_id})
        raise EC2ClientError(
            "UnsupportedOperation",
            "(moto double, after the EC2 user guide) You can't modify the instance type of a Spot Instance "
            f"({instance_id}): while a Spot Instance is stopped, you can modify some of its instance "
            "attributes, but not the instance type.",
        )
    return _modify(self, instance_id, key, value)


_describe_tags = TagBackend.describe_tags


def describe_tags(self, filters=None):
    out = _describe_tags(self, filters)
    roots = set()
    for instance in self.all_instances():
        dev = instance.block_device_mapping.get(instance.root_device_name)
        if dev is not None and getattr(dev, "volume_id", None):
            roots.add(dev.volume_id)
    # Stable: within each group moto's order stays.
    return sorted(out, key=lambda t: 1 if str(t.get("resource_id", "")).startswith("vol-") and t.get("resource_id") not in roots else 0)


TagBackend.describe_tags = describe_tags

InstanceBackend.stop_instances = stop_instances
InstanceBackend.start_instances = start_instances
InstanceBackend.terminate_instances = terminate_instances
InstanceBackend.modify_instance_attribute = modify_instance_attribute


def find_instance(region, instance_id):
    for account in get_backend("ec2").keys():
        backend = get_backend("ec2")[account][region]
        try:
            return backend, backend.get_instance(instance_id)
        except Exception:  # noqa: BLE001 (moto raises its own NotFound)
            continue
    raise KeyError(instance_id)


def control(request):
    """The double's own endpoints: what only EC2 itself does."""
    q = urllib.parse.parse_qs(request.query_string.decode())
    instance_id = (q.get("instance") or [""])[0]
    region = (q.get("region") or ["us-east-1"])[0]
    try:
        backend, instance = find_instance(region, instance_id)
    except KeyError:
        return Response(f"no instance {instance_id} in {region}\n", status=404)
    r = linked_request(backend, instance_id)
    if request.path == "/_harness/spot/interrupt":
        instance.stop()
        instance._reason = "Server.SpotInstanceShutdown"
        instance.state_reason = StateReason(
            "Server.SpotInstanceShutdown: The instance was stopped because of a Spot interruption",
            "Server.SpotInstanceShutdown",
        )
        if r is not None:
            r.set_status("disabled", "instance-stopped-no-capacity", "EC2 interrupted the Spot Instance (no capacity)")
    elif request.path == "/_harness/spot/restart":
        instance.start()
        if r is not None:
            r.set_status("active", "fulfilled", "EC2 restarted the Spot Instance: capacity returned")
    else:
        return Response("unknown control path\n", status=404)
    log({"double": request.path, "instance": instance_id})
    return Response(f"{instance.state}\n")


moto_app = DomainDispatcherApplication(create_backend_app)


def app(environ, start_response):
    request = Request(environ)
    if request.path.startswith("/_harness/"):
        return control(request)(environ, start_response)
    body = request.get_data(cache=True)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    action = (form.get("Action") or ["?"])[0]
    params = {k: v[0][:300] for k, v in form.items() if k not in ("Action", "Version") and "UserData" not in k}
    status = {}

    def recording_start_response(s, headers, exc_info=None):
        status["code"] = s.split(" ", 1)[0]
        return start_response(s, headers, exc_info)

    out = moto_app(environ, recording_start_response)
    log({"action": action, "status": status.get("code"), "params": params})
    return out


def create_roles(port):
    import boto3  # moto depends on boto3

    iam = boto3.client(
        "iam",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="harness-moto",
        aws_secret_access_key="harness-moto",
    )
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }
    )
    for name in ROLES:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)


def main():
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    create_roles(port)
    print(f"harness-moto-ready {port}", flush=True)
    thread.join()


if __name__ == "__main__":
    main()

# The workspace's AWS resources, planned and applied against a MOCKED aws
# provider (mock_provider: the real provider's schema, fake values, no AWS
# calls). Proves which resources each market creates and how they are
# configured; what AWS then does with them needs a real AWS run.
# Needs the hashicorp/aws provider binary (schema); harness gate runs this
# only where it is installed (see harness/src/ec2/terraform_tests.rs).

mock_provider "aws" {
  mock_data "aws_ami" {
    defaults = {
      id = "ami-0123456789abcdef0"
    }
  }
}

variables {
  name           = "coder-alice-ws"
  nixos_release  = "25.05"
  arch           = "x86_64"
  instance_type  = "t3.medium"
  user_data      = "#!/bin/sh\n"
  market_options = []
  root_disk_size = 40
  home_disk_size = 20
  running        = true
  tags           = { coder_workspace = "ws" }
}

run "on_demand_is_one_plain_instance" {
  command = apply
  assert {
    condition     = length(aws_instance.this) == 1 && length(aws_spot_instance_request.this) == 0
    error_message = "on-demand: expected one aws_instance and no spot request"
  }
  assert {
    condition     = aws_instance.this[0].ami == "ami-0123456789abcdef0"
    error_message = "the instance must boot the AMI the lookup found"
  }
  assert {
    condition     = aws_instance.this[0].volume_tags == null
    error_message = "volume_tags would also claim the home volume and cycle against its own tags; tag the root through root_block_device"
  }
  assert {
    condition     = aws_instance.this[0].root_block_device[0].tags["Name"] == "coder-alice-ws-root" && aws_instance.this[0].root_block_device[0].tags["coder_workspace"] == "ws"
    error_message = "the root volume carries the workspace tags through root_block_device"
  }
  assert {
    condition     = aws_ebs_volume.home.availability_zone == aws_instance.this[0].availability_zone
    error_message = "the home volume must be in the instance's zone"
  }
  assert {
    condition     = aws_volume_attachment.home.stop_instance_before_detaching == true
    error_message = "detaching a mounted /home from a running instance can hang: stop the instance first"
  }
  assert {
    condition     = aws_volume_attachment.home.device_name == "/dev/xvdb" && aws_volume_attachment.home.instance_id == aws_instance.this[0].id
    error_message = "home is attached to the instance as /dev/xvdb"
  }
  assert {
    condition     = length(aws_ec2_tag.spot_instance) == 0 && length(aws_ec2_tag.spot_root) == 0
    error_message = "on-demand instances are tagged directly"
  }
  assert {
    condition     = output.spot_price == ""
    error_message = "no spot price for on-demand"
  }
}

run "ami_lookup_is_the_official_nixos_image" {
  command = plan
  variables {
    arch          = "aarch64"
    nixos_release = "24.11"
  }
  assert {
    condition     = toset(data.aws_ami.nixos.owners) == toset(["427812963091"]) && data.aws_ami.nixos.most_recent == true
    error_message = "the AMI comes from the NixOS project's account, newest first"
  }
  assert {
    condition     = toset(one([for f in data.aws_ami.nixos.filter : f.values if f.name == "name"])) == toset(["nixos/24.11.*"])
    error_message = "the AMI name filter pins the release variable"
  }
  assert {
    condition     = toset(one([for f in data.aws_ami.nixos.filter : f.values if f.name == "architecture"])) == toset(["arm64"])
    error_message = "aarch64 variants look up arm64 images"
  }
}

run "spot_is_a_persistent_request_that_stops" {
  command = apply
  variables {
    market_options = [{
      market_type = "spot"
      spot_options = {
        spot_instance_type             = "persistent"
        instance_interruption_behavior = "stop"
        max_price                      = "0.05"
      }
    }]
  }
  assert {
    condition     = length(aws_instance.this) == 0 && length(aws_spot_instance_request.this) == 1
    error_message = "spot: expected one aws_spot_instance_request (its destroy cancels the request) and no aws_instance"
  }
  assert {
    condition     = aws_spot_instance_request.this[0].spot_type == "persistent" && aws_spot_instance_request.this[0].instance_interruption_behavior == "stop"
    error_message = "spot requests are persistent and stop on interruption"
  }
  assert {
    condition     = aws_spot_instance_request.this[0].wait_for_fulfillment == true
    error_message = "the request must be fulfilled before the home volume is created in its zone"
  }
  assert {
    condition     = try(timecmp(aws_spot_instance_request.this[0].valid_until, timeadd(plantimestamp(), "8760h")) > 0, false)
    error_message = "AWS ends a persistent request after 7 days by default; valid_until must lie far ahead"
  }
  assert {
    condition     = aws_spot_instance_request.this[0].spot_price == "0.05" && output.spot_price == "0.05"
    error_message = "max price is passed through"
  }
  assert {
    condition     = aws_spot_instance_request.this[0].volume_tags == null
    error_message = "no volume_tags on spot either"
  }
  assert {
    condition     = aws_ec2_tag.spot_instance["Name"].value == "coder-alice-ws" && aws_ec2_tag.spot_instance["Name"].resource_id == aws_spot_instance_request.this[0].spot_instance_id
    error_message = "the spot instance itself is tagged (a request's tags stay on the request)"
  }
  assert {
    condition     = aws_ec2_tag.spot_root["Name"].value == "coder-alice-ws-root" && aws_ec2_tag.spot_root["Name"].resource_id == aws_spot_instance_request.this[0].root_block_device[0].volume_id
    error_message = "the spot instance's root volume is tagged"
  }
  assert {
    condition     = aws_volume_attachment.home.instance_id == aws_spot_instance_request.this[0].spot_instance_id && aws_volume_attachment.home.stop_instance_before_detaching == true
    error_message = "home attaches to the spot instance, stopping it before any detach"
  }
  assert {
    condition     = aws_ec2_instance_state.this.instance_id == aws_spot_instance_request.this[0].spot_instance_id && aws_ec2_instance_state.this.state == "running"
    error_message = "start/stop drives the spot instance"
  }
  assert {
    condition     = aws_ebs_volume.home.availability_zone == aws_spot_instance_request.this[0].availability_zone
    error_message = "the home volume must be in the spot instance's zone"
  }
}

run "stopped_workspace_stops_the_instance" {
  command = plan
  variables {
    running = false
  }
  assert {
    condition     = aws_ec2_instance_state.this.state == "stopped"
    error_message = "running = false stops the instance"
  }
}

run "bad_release_is_rejected" {
  command = plan
  variables {
    nixos_release = "latest"
  }
  expect_failures = [var.nixos_release]
}

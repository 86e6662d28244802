# The workspace's AWS resources, planned and applied against a MOCKED aws
# provider (mock_provider: the real provider's schema, fake values, no AWS
# calls). Proves which resources each market creates and how they are
# configured; what the real provider sends and keeps is the twin tier's
# (features/twin.feature), what AWS then does needs a real AWS run.
# Needs the hashicorp/aws provider binary (schema); harness gate runs this
# only where it is installed (see harness/src/machine/ec2/terraform_tests.rs).

mock_provider "aws" {
  mock_data "aws_ami" {
    defaults = {
      id = "ami-0123456789abcdef0"
    }
  }
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1a", "us-east-1b", "us-east-1c"]
    }
  }
  # The instance type is offered in b and c only: the zone is b.
  mock_data "aws_ec2_instance_type_offerings" {
    defaults = {
      locations = ["us-east-1c", "us-east-1b"]
    }
  }
  mock_data "aws_ebs_volumes" {
    defaults = {
      ids = []
    }
  }
  mock_data "aws_subnet" {
    defaults = {
      id = "subnet-0123456789abcdef0"
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

run "an_existing_home_volume_keeps_its_zone" {
  # First, while the state is empty: a plan of a first build.
  command = plan
  override_data {
    target = data.aws_ebs_volumes.home
    values = {
      ids = ["vol-0123456789abcdef0"]
    }
  }
  override_data {
    target = data.aws_ebs_volume.home[0]
    values = {
      availability_zone = "us-east-1c"
    }
  }
  assert {
    condition     = terraform_data.zone.input == "us-east-1c"
    error_message = "a workspace whose home volume already exists (an earlier template version) stays in that volume's zone"
  }
}

run "on_demand_is_one_plain_instance" {
  command = apply
  assert {
    condition     = aws_instance.this.ami == "ami-0123456789abcdef0"
    error_message = "the instance must boot the AMI the lookup found"
  }
  assert {
    condition     = length(aws_ec2_tag.spot_request) == 0
    error_message = "on-demand: no Spot request to tag"
  }
  assert {
    condition     = aws_instance.this.volume_tags == null
    error_message = "volume_tags would also claim the home volume and cycle against its own tags; tag the root through root_block_device"
  }
  assert {
    condition     = aws_instance.this.root_block_device[0].tags["Name"] == "coder-alice-ws-root" && aws_instance.this.root_block_device[0].tags["coder_workspace"] == "ws"
    error_message = "the root volume carries the workspace tags through root_block_device"
  }
  assert {
    condition     = aws_instance.this.metadata_options[0].http_tokens == "required" && aws_instance.this.metadata_options[0].instance_metadata_tags == "enabled"
    error_message = "IMDSv2 only, and the instance tags in IMDS (the guest reads coder_transition at boot)"
  }
  assert {
    condition     = aws_instance.this.tags["coder_transition"] == "start"
    error_message = "a start build records the desired state start on the instance"
  }
  assert {
    condition     = terraform_data.zone.output == "us-east-1b"
    error_message = "the zone is the first, in name order, that offers the instance type"
  }
  assert {
    condition     = aws_ebs_volume.home.availability_zone == terraform_data.zone.output && aws_instance.this.subnet_id == "subnet-0123456789abcdef0"
    error_message = "the home volume is created in the pinned zone and the instance placed in that zone's subnet"
  }
  assert {
    condition     = aws_volume_attachment.home.stop_instance_before_detaching == true
    error_message = "detaching a mounted /home from a running instance can hang: stop the instance first"
  }
  assert {
    condition     = aws_volume_attachment.home.device_name == "/dev/xvdb" && aws_volume_attachment.home.instance_id == aws_instance.this.id
    error_message = "home is attached to the instance as /dev/xvdb"
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

run "spot_is_a_persistent_instance_that_stops" {
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
    condition     = aws_instance.this.instance_market_options[0].market_type == "spot" && aws_instance.this.instance_market_options[0].spot_options[0].spot_instance_type == "persistent" && aws_instance.this.instance_market_options[0].spot_options[0].instance_interruption_behavior == "stop"
    error_message = "spot is an aws_instance with persistent market options that stop on interruption"
  }
  assert {
    condition     = aws_instance.this.instance_market_options[0].spot_options[0].max_price == "0.05" && output.spot_price == "0.05"
    error_message = "max price is passed through"
  }
  assert {
    condition     = aws_instance.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 on spot too (RunInstances sends the metadata options; a legacy spot request cannot)"
  }
  assert {
    condition     = aws_instance.this.volume_tags == null && aws_instance.this.root_block_device[0].tags["Name"] == "coder-alice-ws-root"
    error_message = "no volume_tags on spot either; the root is tagged through root_block_device"
  }
  assert {
    condition     = aws_ec2_tag.spot_request["Name"].value == "coder-alice-ws" && aws_ec2_tag.spot_request["Name"].resource_id == aws_instance.this.spot_instance_request_id
    error_message = "the Spot request is tagged (RunInstances tags only the instance and its volumes)"
  }
  assert {
    condition     = !contains(keys(aws_ec2_tag.spot_request), "coder_transition")
    error_message = "the desired state is the instance's tag, not the request's"
  }
  assert {
    condition     = terraform_data.spot_launch.output == "t3.medium"
    error_message = "a spot instance's type change replaces it (EC2 cannot change a Spot Instance's type)"
  }
  assert {
    condition     = aws_ebs_volume.home.availability_zone == terraform_data.zone.output && aws_volume_attachment.home.instance_id == aws_instance.this.id
    error_message = "the home volume lives in the pinned zone and attaches to the spot instance"
  }
}

run "on_demand_type_changes_do_not_replace" {
  command = plan
  assert {
    condition     = terraform_data.spot_launch.input == "on-demand"
    error_message = "an on-demand instance changes its type in place (stop, modify, start): nothing may trigger a replacement"
  }
}

run "stopped_workspace_stops_the_instance_and_says_so" {
  command = plan
  variables {
    running = false
  }
  assert {
    condition     = aws_ec2_instance_state.this.state == "stopped"
    error_message = "running = false stops the instance"
  }
  assert {
    condition     = aws_instance.this.tags["coder_transition"] == "stop"
    error_message = "a stop build records stop on the instance, which keeps an instance EC2 restarts by itself from coming online"
  }
}

run "the_zone_never_moves" {
  command = apply
  # Zone b is no longer listed as available: a new choice would be c, but
  # the workspace stays in b, where its home volume is.
  override_data {
    target = data.aws_availability_zones.available
    values = {
      names = ["us-east-1c"]
    }
  }
  assert {
    condition     = terraform_data.zone.output == "us-east-1b" && aws_ebs_volume.home.availability_zone == "us-east-1b"
    error_message = "the zone chosen on the first build never moves (terraform_data.zone ignores later choices)"
  }
}

run "a_type_not_offered_in_the_zone_is_refused" {
  command = plan
  override_data {
    target = data.aws_ec2_instance_type_offerings.type
    values = {
      locations = []
    }
  }
  expect_failures = [terraform_data.zone]
}

run "bad_release_is_rejected" {
  command = plan
  variables {
    nixos_release = "latest"
  }
  expect_failures = [var.nixos_release]
}

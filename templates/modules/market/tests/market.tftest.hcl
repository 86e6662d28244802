# Spot vs on-demand, where the difference lives.

run "on_demand_has_no_market_options" {
  command = apply
  variables {
    is_spot = false
  }
  assert {
    condition     = length(output.market_options) == 0
    error_message = "on-demand variants must not request a spot market"
  }
  assert {
    condition     = output.market == "on-demand"
    error_message = "market label"
  }
}

run "spot_is_persistent_and_stops" {
  command = apply
  variables {
    is_spot = true
  }
  assert {
    condition     = output.market_options[0].market_type == "spot"
    error_message = "spot variants request the spot market"
  }
  assert {
    condition     = output.market_options[0].spot_options.spot_instance_type == "persistent"
    error_message = "spot requests must be persistent so the instance can stop and start"
  }
  assert {
    condition     = output.market_options[0].spot_options.instance_interruption_behavior == "stop"
    error_message = "interruption must stop, not terminate, the instance"
  }
  assert {
    condition     = output.market_options[0].spot_options.max_price == null
    error_message = "no max price unless set"
  }
}

run "spot_max_price" {
  command = apply
  variables {
    is_spot    = true
    spot_price = "0.05"
  }
  assert {
    condition     = output.market_options[0].spot_options.max_price == "0.05"
    error_message = "max price is passed through"
  }
}

run "bad_spot_price_is_rejected" {
  command = plan
  variables {
    is_spot    = true
    spot_price = "cheap; rm -rf /"
  }
  expect_failures = [var.spot_price]
}

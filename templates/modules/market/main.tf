# Provider-free module: where spot and on-demand differ. Turns is_spot and
# spot_price into the market settings modules/ec2-instance applies to its
# aws_instance (empty: on-demand; one object: its instance_market_options),
# so `terraform test` can prove the difference offline.

variable "is_spot" {
  description = "Whether the variant runs on spot instances."
  type        = bool
}

variable "spot_price" {
  description = "Maximum hourly price in USD; empty means the on-demand price cap."
  type        = string
  default     = ""
  validation {
    condition     = var.spot_price == "" || can(regex("^[0-9]+(\\.[0-9]+)?$", var.spot_price))
    error_message = "spot_price must be empty or a decimal number of USD per hour, e.g. 0.05."
  }
}

output "market_options" {
  description = "List with one instance_market_options object for spot, empty for on-demand (for a dynamic block)."
  value = var.is_spot ? [{
    market_type = "spot"
    spot_options = {
      # Persistent + stop: an interruption stops the instance (the home
      # volume and root disk stay), and EC2 itself restarts it when
      # capacity returns (only EC2 may; a Coder start build cannot).
      spot_instance_type             = "persistent"
      instance_interruption_behavior = "stop"
      max_price                      = var.spot_price == "" ? null : var.spot_price
    }
  }] : []
}

output "market" {
  description = "spot or on-demand, for tags and metadata."
  value       = var.is_spot ? "spot" : "on-demand"
}

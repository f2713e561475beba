//! Where to reach AWS, from the flags and environment `run` and `requests` share: the QuickSight
//! and STS endpoints and the region, made into the SDK adapter.

use super::{SdkQuickSight, SdkSettings};
use clap::Args;
use std::time::Duration;

/// Where to reach AWS: shared by `run` and `requests`.
#[derive(Args, Debug, Clone, Default)]
pub struct AwsEndpoints {
    /// AWS region (for `run`: of decisions without spec.region); else the AWS profile's.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// QuickSight endpoint override (e.g. the simulator's address).
    #[arg(long, env = "AWS_ENDPOINT_URL_QUICKSIGHT")]
    pub quicksight_endpoint: Option<String>,
    /// STS endpoint override for assuming roles (e.g. the simulator's address).
    #[arg(long, env = "AWS_ENDPOINT_URL_STS")]
    pub sts_endpoint: Option<String>,
}

impl AwsEndpoints {
    /// The QuickSight client these flags and the AWS configuration (environment, profile, pod
    /// identity) describe, and the region: the flag's, else the configuration's.
    pub async fn connect(&self, call_timeout: Duration) -> (SdkQuickSight, Option<String>) {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let region = self
            .region
            .clone()
            .or_else(|| aws.region().map(|r| r.to_string()));
        let quicksight = SdkQuickSight::new(
            aws,
            SdkSettings {
                endpoint_url: self.quicksight_endpoint.clone(),
                sts_endpoint_url: self.sts_endpoint.clone(),
                call_timeout,
            },
        );
        (quicksight, region)
    }
}

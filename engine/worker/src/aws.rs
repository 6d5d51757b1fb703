//! The AWS clients of the commands that reach S3 (`serve`, `train`, and `run` or
//! `train` given an `s3://` model), built one way from the environment's settings.

use sphinx_core::settings::S3Args;

/// An S3 client from `sdk` (region, credentials, endpoint from the environment),
/// path-style where `s3` asks for it, as local S3 servers need.
pub fn s3_client(sdk: &aws_config::SdkConfig, s3: &S3Args) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(s3.s3_force_path_style)
            .build(),
    )
}

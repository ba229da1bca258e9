"""The public edge: one CloudFront distribution for the web app and its API.

Default behaviour: the single-page app from a private S3 bucket through origin access control
(or, when a `site_origin` is given, from that origin, e.g. the frontend service). `/api/*`: the
backend, uncached, all methods, viewer headers forwarded. HTTPS only (HTTP redirected), TLS 1.2+
with a custom domain, security headers on every response, access logs to S3.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from constructs import Construct

# Paths without a file extension are routes of the single-page app: serve index.html for them.
SPA_REWRITE = """
function handler(event) {
  var request = event.request;
  var last = request.uri.split('/').pop();
  if (last.indexOf('.') === -1) {
    request.uri = '/index.html';
  }
  return request;
}
""".strip()


class FrontendDistribution(Construct):
    """CloudFront in front of the site (S3 or a given origin) and the API origin."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api_origin: cloudfront.IOrigin,
        log_bucket: s3.IBucket,
        site_origin: cloudfront.IOrigin | None = None,
        api_path_pattern: str = "/api/*",
        domain_names: Sequence[str] = (),
        certificate: acm.ICertificate | None = None,
        web_acl_arn: str | None = None,
        site_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        comment: str = "MLOps Studio",
    ) -> None:
        super().__init__(scope, id)
        self.bucket: s3.Bucket | None = None
        function_associations = None
        if site_origin is None:
            self.bucket = s3.Bucket(
                self,
                "Site",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=log_bucket,
                server_access_logs_prefix="site-bucket/",
                lifecycle_rules=[s3.LifecycleRule(id="old-builds", noncurrent_version_expiration=Duration.days(30))],
                removal_policy=site_removal_policy,
            )
            site_origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
            rewrite = cloudfront.Function(
                self,
                "SpaRewrite",
                code=cloudfront.FunctionCode.from_inline(SPA_REWRITE),
                runtime=cloudfront.FunctionRuntime.JS_2_0,
                comment="Serve index.html for single-page-app routes",
            )
            function_associations = [
                cloudfront.FunctionAssociation(function=rewrite, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST)
            ]
        self.response_headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment=f"{comment}: security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, preload=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN, override=True
                ),
                xss_protection=cloudfront.ResponseHeadersXSSProtection(protection=True, mode_block=True, override=True),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=comment,
            default_root_object="index.html",
            domain_names=list(domain_names) or None,
            certificate=certificate,
            # Applies with a custom domain's certificate; the default *.cloudfront.net one cannot be pinned.
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            web_acl_id=web_acl_arn,
            enable_logging=True,
            log_bucket=log_bucket,
            log_file_prefix="cloudfront/",
            default_behavior=cloudfront.BehaviorOptions(
                origin=site_origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.response_headers,
                function_associations=function_associations,
                compress=True,
            ),
            additional_behaviors={
                api_path_pattern: cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                    response_headers_policy=self.response_headers,
                    compress=True,
                )
            },
        )

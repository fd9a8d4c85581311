//! DescribeCluster: cluster id, controller and brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::api::{Handler, RequestContext};

pub struct DescribeCluster;

impl Handler for DescribeCluster {
    type Request = DescribeClusterRequest;
    type Response = DescribeClusterResponse;
    const KEY: ApiKey = ApiKey::DescribeCluster;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 1;

    async fn handle(
        ctx: &RequestContext,
        _request: DescribeClusterRequest,
    ) -> Option<DescribeClusterResponse> {
        let snapshot = ctx.shard.snapshot();
        let brokers = snapshot
            .brokers
            .iter()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(&b.host))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.as_deref().map(str_bytes))
            })
            .collect();
        Some(
            DescribeClusterResponse::default()
                .with_endpoint_type(1)
                .with_cluster_id(str_bytes(&snapshot.cluster_id))
                .with_controller_id(BrokerId(snapshot.controller_id))
                .with_brokers(brokers),
        )
    }
}

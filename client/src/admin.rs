//! Topic administration: create, delete, add partitions, describe configs. Requests go
//! to the controller (or any broker on KRaft clusters, which forward them).

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{ClientError, KafkaError, Result};

/// How long the broker may take to apply an admin change before answering.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs config source meaning "nobody set this".
pub const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// A topic to create. `partitions` and `replication_factor` of -1 take the broker's
/// defaults.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// One configuration entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's ConfigSource: 1 topic override, 4 static broker config, 5 default, ...
    pub source: i8,
    pub sensitive: bool,
}

impl ConfigEntry {
    pub fn is_default(&self) -> bool {
        self.source == CONFIG_SOURCE_DEFAULT
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    StrBytes::from_string(name.to_owned()).into()
}

impl Client {
    pub fn create_topic(&mut self, topic: &NewTopic) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )]);
        let (_, response) = self.controller()?.send(&request)?;
        let result = response
            .topics
            .first()
            .ok_or_else(|| missing_result("CreateTopics"))?;
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref().map(|m| m.to_string()),
        )
        .map_err(|e| ClientError::kafka(format!("creating topic {}", topic.name), e))
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        let conn = self.controller()?;
        let version = conn.version_of::<DeleteTopicsRequest>()?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            request.topic_names = vec![topic_name(name)];
        }
        let response = conn.send_version(version, &request, None)?;
        let result = response
            .responses
            .first()
            .ok_or_else(|| missing_result("DeleteTopics"))?;
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref().map(|m| m.to_string()),
        )
        .map_err(|e| ClientError::kafka(format!("deleting topic {name}"), e))
    }

    /// Raises `name` to `count` partitions in total.
    pub fn create_partitions(&mut self, name: &str, count: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)]);
        let (_, response) = self.controller()?.send(&request)?;
        let result = response
            .results
            .first()
            .ok_or_else(|| missing_result("CreatePartitions"))?;
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref().map(|m| m.to_string()),
        )
        .map_err(|e| ClientError::kafka(format!("adding partitions to {name}"), e))
    }

    /// Every configuration entry of each topic, by topic name.
    pub fn describe_topic_configs(
        &mut self,
        names: &[&str],
    ) -> Result<BTreeMap<String, Vec<ConfigEntry>>> {
        let request = DescribeConfigsRequest::default().with_resources(
            names
                .iter()
                .map(|n| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(StrBytes::from_string((*n).to_owned()))
                        .with_configuration_keys(None)
                })
                .collect(),
        );
        let (_, response) = self.any_broker().send(&request)?;
        let mut out = BTreeMap::new();
        for result in response.results {
            let name = result.resource_name.to_string();
            KafkaError::check(
                result.error_code,
                result.error_message.as_ref().map(|m| m.to_string()),
            )
            .map_err(|e| ClientError::kafka(format!("configs of {name}"), e))?;
            let entries = result
                .configs
                .iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.as_ref().map(|v| v.to_string()),
                    source: c.config_source,
                    sensitive: c.is_sensitive,
                })
                .collect();
            out.insert(name, entries);
        }
        Ok(out)
    }
}

pub(crate) fn missing_result(api: &str) -> ClientError {
    ClientError::Invalid(format!("{api} response carries no result"))
}

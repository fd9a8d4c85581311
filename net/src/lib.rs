//! The Kafka protocol server (under construction).

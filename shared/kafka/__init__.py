"""Kafka for every process: the producer (`producer`), the consumer loop with retry and DLQ (`consumer`) and
topic administration (`topics`)."""

"""Kafka I/O: the consumer loop, the batch processor, the producer sink and replays."""

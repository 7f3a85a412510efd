"""Operations commands: dead-letter queues, read-model rebuilds and write/read consistency checks."""

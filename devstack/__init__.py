"""Local backing services (MariaDB, Kafka, FerretDB) run natively, for development and CI (DESIGN.md §7)."""

from devstack.process import DevstackError
from devstack.stack import down, start_service, status, stop_service, up

__all__ = ["DevstackError", "down", "start_service", "status", "stop_service", "up"]

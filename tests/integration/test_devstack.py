"""The devstack services run and answer their real health checks (`make test` runs `devstack up` first)."""

from devstack import status
from shared.settings import Settings


def test_all_services_running_and_answering() -> None:
    result = status(Settings())
    assert set(result) == {"mariadb", "kafka", "postgresql", "ferretdb"}
    for name, line in result.items():
        assert not line.startswith("stopped"), f"{name}: {line}"
        assert "; answering at " in line, f"{name}: {line}"

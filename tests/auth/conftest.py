from tests.integration.conftest import start_sim
from tests.stores.backing import database_url, postgres_url, redis_space

__all__ = ["database_url", "postgres_url", "redis_space", "start_sim"]

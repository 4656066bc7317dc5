from tests.stores.backing import database, database_url, postgres_url, redis_space

__all__ = ["database", "database_url", "postgres_url", "redis_space"]
